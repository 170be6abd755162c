"""The floor of an aiohttp design: the thinnest correct pass-through the benchmark compares with.

aiohttp server + uvloop, one route, one shared ClientSession, the body read and parsed once
with orjson (as any proxy that reads `model` must) and POSTed upstream unchanged. A JSON
answer is read whole and returned with Content-Length (as the gateway does); a stream is
relayed with `iter_any`. No handler cancellation, no logging, no routing, failover, auth or
headers policy.

    venv/bin/python scripts/bare_proxy.py --upstream http://127.0.0.1:9001 [--port 0]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

import aiohttp
import orjson
import uvloop
from aiohttp import web

SESSION = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM = web.AppKey("upstream", str)
JSON_HEADERS = {"Content-Type": "application/json"}


async def forward(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        obj = None
    if not isinstance(obj, dict):
        return web.Response(status=400, text="body must be a JSON object")
    session = request.app[SESSION]
    url = request.app[UPSTREAM] + request.path
    async with session.post(url, data=body, headers=JSON_HEADERS) as upstream:
        content_type = upstream.headers.get("Content-Type", "application/json")
        if not content_type.startswith("text/event-stream"):
            data = await upstream.read()  # whole, returned with Content-Length
            return web.Response(
                status=upstream.status, body=data, headers={"Content-Type": content_type}
            )
        out = web.StreamResponse(status=upstream.status, headers={"Content-Type": content_type})
        await out.prepare(request)
        async for chunk in upstream.content.iter_any():
            await out.write(chunk)
        await out.write_eof()
        return out


async def main(port: int, upstream: str) -> None:
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        app = web.Application(client_max_size=1 << 30)  # bodies of any size, as the gateway
        app[SESSION] = session
        app[UPSTREAM] = upstream.rstrip("/")
        app.router.add_post("/{tail:.*}", forward)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
        await site.start()
        bound = runner.addresses[0][1]
        print(f"bare proxy listening on http://127.0.0.1:{bound}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free)")
    parser.add_argument("--upstream", required=True, help="upstream root, e.g. http://h:p")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(main(args.port, args.upstream))
