"""`gateway demo`: fake providers for every local upstream of a config, and the gateway in front."""

from __future__ import annotations

import asyncio
import os
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from proxy.config.compiler import compile_data
from proxy.config.values import Config, ConfigError
from proxy.fake.behaviour import Behaviour
from proxy.fake.server import FakeProvider
from proxy.ops import logs
from proxy.server.process import serve

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def local_ports(config: Config) -> dict[int, str]:
    """Ports of upstreams on this machine, each with the first upstream name that uses it."""
    ports: dict[int, str] = {}
    for up in config.upstreams.values():
        parts = urlsplit(up.base_url)
        if parts.hostname in LOCAL_HOSTS and parts.port:
            ports.setdefault(parts.port, up.name)
    return ports


def demo_compiler(port: int | None, fake_port: int | None) -> Callable[[str], Config]:
    """Compile the file as the demo runs it: one process, and the ports given on the command
    line in place of the file's (applied again at every reload, so live edits still work)."""

    def compile_demo(text: str) -> Config:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"TOML syntax: {exc}"]) from None
        server = data.setdefault("server", {})
        if isinstance(server, dict):
            server["workers"] = 1
            if port is not None:
                host = str(server.get("listen", "127.0.0.1:8080")).rpartition(":")[0]
                server["listen"] = f"{host or '127.0.0.1'}:{port}"
        if fake_port is not None:
            _move_local_upstreams(data, fake_port)
        return compile_data(data, os.environ)

    return compile_demo


def _move_local_upstreams(data: dict[str, object], first: int) -> None:
    """Give the local upstreams' ports, in order, the ports first, first + 1, ..."""
    upstreams = data.get("upstreams")
    if not isinstance(upstreams, dict):
        return
    urls = {
        name: urlsplit(raw["base_url"])
        for name, raw in upstreams.items()
        if isinstance(raw, dict) and isinstance(raw.get("base_url"), str)
    }
    local = sorted({u.port for u in urls.values() if u.hostname in LOCAL_HOSTS and u.port})
    moved = {old: first + i for i, old in enumerate(local)}
    for name, url in urls.items():
        if url.hostname in LOCAL_HOSTS and url.port in moved:
            host = f"[{url.hostname}]" if ":" in (url.hostname or "") else url.hostname
            netloc = f"{host}:{moved[url.port]}"
            upstreams[name]["base_url"] = urlunsplit(url._replace(netloc=netloc))


def try_line(address: str, config: Config) -> str:
    """The one line the demo prints once it is up: what to run next."""
    model = next(iter(config.routes), "chat-fast")
    body = (
        f'{{"model": "{model}", "stream": true, "messages": [{{"role": "user", "content": "hi"}}]}}'
    )
    return (
        f"demo ready; try: curl -N {address}/v1/chat/completions "
        f"-H 'Content-Type: application/json' -d '{body}'"
    )


async def run_demo(path: Path, port: int | None = None, fake_port: int | None = None) -> int:
    compile_demo = demo_compiler(port, fake_port)
    try:
        config = compile_demo(await asyncio.to_thread(path.read_text, "utf-8"))
    except OSError as exc:
        logs.error("demo_config_invalid", error=f"--config: cannot read {path}: {exc.strerror}")
        return 1
    except ConfigError as exc:
        for line in exc.errors:
            logs.error("demo_config_invalid", error=line)
        return 1
    fakes: list[FakeProvider] = []
    try:
        # Each fake answers a little differently, so latency routing has something to see.
        for i, (p, name) in enumerate(sorted(local_ports(config).items())):
            behaviour = Behaviour(ttft_s=0.05 * (1 + 2 * i), chunk_delay_s=0.05, chunks=12)
            fake = FakeProvider(name=name, default=behaviour)
            try:
                await fake.start("127.0.0.1", p)
            except OSError as exc:
                why = exc.strerror or type(exc).__name__
                logs.error(
                    "startup_failed",
                    error=f"demo: fake upstream port {p} ({name}): {why}; pass --fake-port N",
                )
                return 1
            fakes.append(fake)
            logs.event("demo_fake_upstream", upstream=name, url=fake.base_url)

        def announce(address: str) -> None:
            logs.flush()
            sys.stderr.write(try_line(address, config) + "\n")
            sys.stderr.flush()

        return await serve(path, compiler=compile_demo, on_ready=announce)
    finally:
        await asyncio.gather(*(f.stop() for f in fakes))
