"""Shared fixtures: fake providers and an in-process gateway built from a config dict."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import orjson
import pytest
import tomli_w
from multidict import CIMultiDict

from proxy.fake.behaviour import Behaviour
from proxy.fake.server import FakeProvider
from proxy.ops import logs
from proxy.routing.stats import UpstreamStats
from proxy.server.process import GatewayServer, load

FakeFactory = Callable[..., Awaitable[FakeProvider]]


@pytest.fixture
async def fakes() -> AsyncIterator[FakeFactory]:
    """Start fake providers on free ports; all are stopped at the end of the test."""
    started: list[FakeProvider] = []

    async def make(
        name: str = "fake", default: Behaviour | None = None, **kw: object
    ) -> FakeProvider:
        fake = FakeProvider(name=name, default=default, **kw)  # type: ignore[arg-type]
        await fake.start()
        started.append(fake)
        return fake

    yield make
    for fake in started:
        await fake.stop()


class InProcessGateway:
    """A GatewayServer on a free port in the test's own event loop."""

    def __init__(self, server: GatewayServer, path: Path) -> None:
        self.server = server
        self.path = path
        self.url = server.address

    def write(self, config: dict[str, object]) -> None:
        self.path.write_text(tomli_w.dumps(config))

    async def reload(self) -> bool:
        return await self.server.reloader.reload("test")

    def stats(self, name: str) -> UpstreamStats:
        """The live selection stats of one upstream of the running snapshot."""
        up = self.server.store.current.upstreams[name]
        return self.server.balancer.registry.get(up)


GatewayFactory = Callable[[dict[str, object]], Awaitable[InProcessGateway]]


async def post_chat(url: str, body: object) -> tuple[int, CIMultiDict[str], bytes]:
    """POST a chat body to a gateway (or fake) root URL; status, headers and the whole body."""
    async with (
        aiohttp.ClientSession() as s,
        s.post(url + "/v1/chat/completions", data=orjson.dumps(body)) as r,
    ):
        return r.status, r.headers.copy(), await r.read()


def base_config(upstreams: dict[str, object], routes: dict[str, object]) -> dict[str, object]:
    return {
        "server": {"listen": "127.0.0.1:0", "watch": False, "drain_timeout_s": 2},
        "defaults": {"ttfb_timeout_s": 5, "idle_timeout_s": 5, "connect_timeout_s": 2},
        "upstreams": upstreams,
        "routes": routes,
    }


def upstream(fake: FakeProvider, **extra: object) -> dict[str, object]:
    return {"provider": "openai", "base_url": fake.base_url, "model": f"{fake.name}-model", **extra}


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[GatewayFactory]:
    """Build and start a gateway from a config dict; shut down (drained) after the test."""
    logs.configure("info")
    servers: list[GatewayServer] = []

    async def make(config: dict[str, object]) -> InProcessGateway:
        path = tmp_path / "gateway.toml"
        path.write_text(tomli_w.dumps(config))
        snap, text = load(path)
        server = GatewayServer(path, snap, text)
        await server.start()
        servers.append(server)
        return InProcessGateway(server, path)

    yield make
    for server in servers:
        await server.shutdown()


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback traffic never goes through a proxy from the environment."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    os.environ.pop("NOTIFY_SOCKET", None)
