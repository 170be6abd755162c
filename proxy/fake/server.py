"""The fake LLM provider: an aiohttp server answering each request as a scripted Behaviour."""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import NoReturn

import orjson
from aiohttp import web
from multidict import CIMultiDict

from proxy.fake import anthropic_dialect as anth
from proxy.fake import bedrock_dialect as bed
from proxy.fake import gemini_dialect as gem
from proxy.fake import openai_dialect as oai
from proxy.fake import responses_dialect as responses
from proxy.fake.behaviour import DIALECTS, Behaviour
from proxy.fake.behaviour import add_arguments as add_arguments  # the CLI's half of this module
from proxy.fake.behaviour import behaviour_from_args as behaviour_from_args
from proxy.fake.inband_errors import opening_error
from proxy.fake.recorded import RecordedRequest as RecordedRequest
from proxy.fake.timeline import Timeline

_JSON = "application/json"
_EVENTSTREAM = "application/vnd.amazon.eventstream"


class _Exchange:
    """Per-request flag: the fake itself broke the connection (not a client disconnect)."""

    __slots__ = ("faulted",)

    def __init__(self) -> None:
        self.faulted = False


class FakeProvider:
    """A scripted fake provider (OpenAI, Anthropic or Gemini dialect) on 127.0.0.1."""

    def __init__(
        self,
        *,
        dialect: str = "openai",
        name: str = "fake",
        default: Behaviour | None = None,
        models: tuple[str, ...] = ("fake-model",),
        seed: int = 0,
        keep_requests: int = 10_000,
        aws_keys: Mapping[str, str] | None = None,
    ) -> None:
        if dialect not in DIALECTS:
            raise ValueError(f"dialect must be one of {DIALECTS}, got {dialect!r}")
        self.dialect = dialect
        self.aws_keys = aws_keys or {bed.FAKE_KEY_ID: bed.FAKE_SECRET}
        """Bedrock: the access key pairs whose SigV4 signatures are accepted."""
        self.name = name
        self.default = default or Behaviour()
        self.models = models
        self.requests: list[RecordedRequest] = []
        self.disconnects: list[float] = []
        self.inflight = 0
        self.request_count = 0
        self.port = 0
        self._initial_default = self.default
        self._keep = max(1, keep_requests)
        self._queue: deque[Behaviour] = deque()
        self._rng = random.Random(seed)
        self._host = "127.0.0.1"
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[object]] = set()
        self._stopping = False
        self._timeline: Timeline | None = None
        self._t0 = 0.0

    @property
    def base_url(self) -> str:
        """What a client (or the gateway's upstream config) uses as base URL."""
        host = "127.0.0.1" if self._host in ("", "0.0.0.0", "::") else self._host
        host = f"[{host}]" if ":" in host else host
        root = f"http://{host}:{self.port}"
        return {"openai": f"{root}/v1", "gemini": f"{root}/v1beta"}.get(self.dialect, root)

    @property
    def queued(self) -> int:
        """Scripted behaviours not consumed yet."""
        return len(self._queue)

    def script(self, *behaviours: Behaviour) -> None:
        """Queue behaviours: each request consumes one, in order; then `default` applies."""
        self._queue.extend(behaviours)

    def reset(self) -> None:
        """Forget the script, the records and counters; restore the initial default."""
        self._queue.clear()
        self.requests.clear()
        self.disconnects.clear()
        self.request_count = 0
        self.default = self._initial_default
        self._timeline = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on host:port (0 picks a free port, read back from `port`)."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/_fake/script", self._ctl_script)
        app.router.add_put("/_fake/default", self._ctl_default)
        app.router.add_get("/_fake/requests", self._ctl_requests)
        app.router.add_post("/_fake/reset", self._ctl_reset)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: a client that goes away cancels a latent or hanging handler.
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner, self._host, self._stopping = runner, host, False
        sockname = runner.addresses[0]
        self.port = int(sockname[1])

    async def stop(self, *, graceful: bool = False) -> None:
        """Stop listening and end every request still being answered (graceful: let them
        finish, up to the runner's 1 s shutdown timeout; idle connections close at once)."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._stopping = True
        for task in () if graceful else list(self._tasks):
            task.cancel()
        await runner.cleanup()

    async def play(self, timeline: Timeline) -> None:
        """Answer by the timeline from now on (scripted behaviours still come first); returns
        once its last phase is over, having closed the listener in its refusal windows (new
        connections are refused; answers under way finish, as when a provider is taken out of
        its load balancer: breaks after the commit point are the `reset_mid_stream` fault)."""
        self._timeline, self._t0 = timeline, time.monotonic()
        for start, end in timeline.refusals():
            await asyncio.sleep(max(0.0, self._t0 + start - time.monotonic()))
            host, port = self._host, self.port
            await self.stop(graceful=True)
            await asyncio.sleep(max(0.0, self._t0 + end - time.monotonic()))
            await self.start(host, port)

    def _next(self) -> Behaviour:
        if self._queue:
            return self._queue.popleft()
        if self._timeline is not None:
            return self._timeline.at(time.monotonic() - self._t0, self._rng)
        return self.default

    def _record(self, request: web.Request, body: bytes) -> None:
        headers = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers)
        self.requests.append(
            RecordedRequest(
                time.monotonic(), request.method, request.path, headers, body, request.query_string
            )
        )
        if len(self.requests) > self._keep:  # bounded for long benchmark runs
            del self.requests[: len(self.requests) - self._keep]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.request_count += 1
        rid = f"req_{self.name}_{self.request_count}"
        self._record(request, body)
        behaviour = self._next()
        exchange = _Exchange()
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self.inflight += 1
        try:
            return await self._answer(request, body, behaviour, rid, exchange)
        except asyncio.CancelledError:
            if not exchange.faulted and not self._stopping:
                self.disconnects.append(time.monotonic())
            raise
        finally:
            self.inflight -= 1
            if task is not None:
                self._tasks.discard(task)

    def _headers(self, b: Behaviour, rid: str, content_type: str) -> CIMultiDict[str]:
        headers = CIMultiDict(
            {"Content-Type": content_type, "x-fake-name": self.name, "x-request-id": rid}
        )
        if self.dialect == "anthropic":
            headers["request-id"] = rid
        if b.retry_after is not None:
            headers["Retry-After"] = b.retry_after
        if b.retry_after_ms is not None:
            headers["retry-after-ms"] = b.retry_after_ms
        for name, _ in b.headers:  # scripted headers replace ours, and may repeat
            headers.popall(name, None)
        headers.extend(b.headers)
        return headers

    async def _answer(
        self, request: web.Request, body: bytes, b: Behaviour, rid: str, ex: _Exchange
    ) -> web.StreamResponse:
        if b.fault == "hang":
            await asyncio.Event().wait()  # until the client goes away (handler cancelled)
        if b.fault in ("reset_before_headers", "close_before_headers"):
            await _break(request, ex, rst=b.fault == "reset_before_headers")
        if b.latency_s:
            await asyncio.sleep(b.latency_s)
        status = b.status
        if b.error_rate and self._rng.random() < b.error_rate:
            status = b.error_status
        try:
            if status >= 300:
                raise oai.Invalid(status, b.error_body or self._error_body(status, body, rid))
            plan = self._plan(request, body, b, rid)
        except oai.Invalid as exc:
            if b.ttft_s:
                await asyncio.sleep(b.ttft_s)
            headers = self._headers(b, rid, _JSON)
            return web.Response(status=exc.status, body=exc.body, headers=headers)
        if isinstance(plan, bytes) and not b.fault:
            if b.ttft_s:
                await asyncio.sleep(b.ttft_s)
            return web.Response(status=status, body=plan, headers=self._headers(b, rid, _JSON))
        return await self._stream(request, plan, b, status, rid, ex)

    def _error_body(self, status: int, body: bytes, rid: str) -> bytes:
        model = oai.peek_model(body)
        if self.dialect == "anthropic":
            return anth.default_error(status, rid, model)
        if self.dialect == "gemini":
            return gem.error(status)
        if self.dialect == "bedrock":
            return bed.default_error(status)
        return oai.default_error(status, model)

    def _plan(
        self, request: web.Request, body: bytes, b: Behaviour, rid: str
    ) -> bytes | oai.Events:
        if self.dialect == "bedrock":
            url = f"http://{request.host}{request.raw_path}"  # as signed: path not decoded
            bed.verify(request.method, url, request.headers, body, self.aws_keys)
        answer = {"anthropic": anth.answer, "gemini": gem.answer, "bedrock": bed.answer}.get(
            self.dialect, oai.answer
        )
        if (
            self.dialect == "openai"
            and request.method == "POST"
            and request.path.endswith("/responses")
        ):
            answer = responses.answer_request
        base = oai.Reply(
            rid=rid,
            model="",  # the dialect fills in the requested model
            pieces=b.pieces(),
            prompt_tokens=b.prompt_tokens_for(body),
            created=int(time.time()),
            cached_tokens=b.cached_tokens,
            tool=b.tool,
        )
        plan = answer(request.method, request.path, body, base, self.models)
        if b.stream_error is not None and isinstance(plan, oai.Events):
            return oai.Events(opening_error(self.dialect, plan, b.stream_error), (), ())
        return plan

    async def _stream(
        self,
        request: web.Request,
        plan: bytes | oai.Events,
        b: Behaviour,
        status: int,
        rid: str,
        ex: _Exchange,
    ) -> web.StreamResponse:
        sse = isinstance(plan, oai.Events)
        kind = _EVENTSTREAM if self.dialect == "bedrock" else "text/event-stream"
        headers = self._headers(b, rid, kind if sse else _JSON)
        if sse:
            headers.setdefault("Cache-Control", "no-cache")
        events = plan if isinstance(plan, oai.Events) else oai.Events((), (), (plan,))
        resp = web.StreamResponse(status=status, headers=headers)
        resp.enable_chunked_encoding()
        await resp.prepare(request)  # sends the headers now
        try:
            if b.fault == "drip":
                while True:  # comments only (whitespace for JSON): never an event
                    await resp.write(b": \n" if sse else b"\n")
                    await asyncio.sleep(b.drip_interval_s)
            if b.ttft_s:
                await asyncio.sleep(b.ttft_s)
            for event in events.head:
                await resp.write(event)
            limit = b.fault_after_chunks if b.fault == "reset_mid_stream" else len(events.content)
            interval = b.chunk_interval_s
            for i, event in enumerate(events.content[:limit]):
                if i and interval:
                    await asyncio.sleep(interval)
                await resp.write(event)
            if b.fault == "reset_mid_stream":
                await _break(request, ex, rst=True)
            for event in events.tail:
                await resp.write(event)
            await resp.write_eof()
        except ConnectionError:  # the client went away between two writes
            self.disconnects.append(time.monotonic())
        return resp

    async def _ctl_script(self, request: web.Request) -> web.Response:
        try:
            self.script(*await _read_behaviours(request))
        except ValueError as exc:
            return self._ctl_reply({"error": str(exc)}, status=400)
        return self._ctl_reply({"queued": self.queued})

    async def _ctl_default(self, request: web.Request) -> web.Response:
        try:
            (self.default,) = await _read_behaviours(request, single=True)
        except ValueError as exc:
            return self._ctl_reply({"error": str(exc)}, status=400)
        return self._ctl_reply({"default": self.default.to_json()})

    async def _ctl_requests(self, request: web.Request) -> web.Response:
        raw_limit = request.query.get("limit", "20")
        limit = int(raw_limit) if raw_limit.isdigit() else 20
        recent = [
            {"method": r.method, "path": r.path, "body": r.body.decode("utf-8", "replace")}
            for r in (self.requests[-limit:] if limit else [])
        ]
        counts = {"count": self.request_count, "inflight": self.inflight, "queued": self.queued}
        return self._ctl_reply({**counts, "disconnects": len(self.disconnects), "recent": recent})

    async def _ctl_reset(self, _request: web.Request) -> web.Response:
        self.reset()
        return self._ctl_reply({"reset": True})

    def _ctl_reply(self, obj: dict[str, object], status: int = 200) -> web.Response:
        headers = {"Content-Type": _JSON, "x-fake-name": self.name}
        return web.Response(status=status, body=orjson.dumps(obj), headers=headers)


async def _break(request: web.Request, ex: _Exchange, *, rst: bool) -> NoReturn:
    """Drop the connection: RST (SO_LINGER 0) or a clean FIN; never answer."""
    ex.faulted = True
    transport = request.transport
    if transport is not None:
        if rst:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        else:
            transport.close()
    await asyncio.Event().wait()  # connection_lost cancels this handler
    raise AssertionError("unreachable")


async def _read_behaviours(request: web.Request, *, single: bool = False) -> list[Behaviour]:
    try:
        raw = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc}") from None
    items = [raw] if single or not isinstance(raw, list) else raw
    if not all(isinstance(item, dict) for item in items):
        raise ValueError("expected a behaviour object" + ("" if single else " or a list of them"))
    return [Behaviour.from_json(item) for item in items]


async def serve(
    host: str,
    port: int,
    dialect: str,
    name: str,
    default: Behaviour,
    on_ready: Callable[[int], None],
) -> None:
    """Run a FakeProvider until cancelled; on_ready gets the bound port."""
    fake = FakeProvider(dialect=dialect, name=name, default=default)
    await fake.start(host, port)
    try:
        on_ready(fake.port)
        await asyncio.Event().wait()
    finally:
        await fake.stop()
