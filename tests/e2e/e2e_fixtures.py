"""E2E fixtures (loaded with `pytest_plugins`): gateway subprocesses and fake providers.

Everything a fixture starts is stopped at teardown: gateways by PID (SIGTERM, then SIGKILL
after a timeout), fake providers in the test's own event loop.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from e2e.e2e_harness import GATEWAY_CMD, FakeStarter, GatewayProcess, GatewayStarter, child_env

from proxy.fake.behaviour import Behaviour
from proxy.fake.server import FakeProvider


@pytest.fixture
def spawn_gateway() -> Iterator[GatewayStarter]:
    """Start `gateway <command> --config PATH` subprocesses; each is stopped by PID at the end."""
    started: list[GatewayProcess] = []

    def start(
        config: Path,
        *,
        command: str = "serve",
        env: Mapping[str, str] | None = None,
        drop_env: Sequence[str] = (),
        args: Sequence[str] = (),
    ) -> GatewayProcess:
        proc = subprocess.Popen(
            [*GATEWAY_CMD, command, "--config", str(config), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env(env, drop_env),
            cwd=str(config.parent),
        )
        gw = GatewayProcess(proc)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()


@pytest.fixture
async def fake_upstreams() -> AsyncIterator[FakeStarter]:
    """Fake providers on 127.0.0.1 free ports, in the test's event loop."""
    started: list[FakeProvider] = []

    async def start(name: str, default: Behaviour | None = None) -> FakeProvider:
        fake = FakeProvider(name=name, default=default or Behaviour())
        await fake.start("127.0.0.1", 0)
        started.append(fake)
        return fake

    yield start
    for fake in started:
        await fake.stop()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound AF_UNIX datagram socket standing in for systemd's $NOTIFY_SOCKET."""
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    yield sock, path
    sock.close()
