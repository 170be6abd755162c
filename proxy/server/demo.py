"""`gateway demo`: fake providers for every local upstream of a config, and the gateway in front."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit

from proxy.config.compiler import compile_text
from proxy.config.values import ConfigError
from proxy.fake.behaviour import Behaviour
from proxy.fake.server import FakeProvider
from proxy.ops import logs
from proxy.server.process import serve

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def local_ports(text: str) -> dict[int, str]:
    """Ports of upstreams on this machine, each with the first upstream name that uses it."""
    config = compile_text(text)
    ports: dict[int, str] = {}
    for up in config.upstreams.values():
        parts = urlsplit(up.base_url)
        if parts.hostname in LOCAL_HOSTS and parts.port:
            ports.setdefault(parts.port, up.name)
    return ports


async def run_demo(path: Path) -> int:
    try:
        ports = local_ports(await asyncio.to_thread(path.read_text, "utf-8"))
    except (OSError, ConfigError) as exc:
        logs.error("demo_config_invalid", error=str(exc))
        return 1
    fakes: list[FakeProvider] = []
    # Each fake answers a little differently, so latency routing has something to see.
    for i, (port, name) in enumerate(sorted(ports.items())):
        behaviour = Behaviour(ttft_s=0.05 * (1 + 2 * i), chunk_delay_s=0.05, chunks=12)
        fake = FakeProvider(name=name, default=behaviour)
        await fake.start("127.0.0.1", port)
        fakes.append(fake)
        logs.event("demo_fake_upstream", upstream=name, url=fake.base_url)
    try:
        return await serve(path)
    finally:
        await asyncio.gather(*(f.stop() for f in fakes))
