"""Live reload of a real gateway process: file edits under load, broken files, SIGHUP."""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import tomli_w
from e2e.e2e_harness import (
    FakeStarter,
    GatewayProcess,
    GatewayStarter,
    chat_body,
    config_dict,
    replace_file,
    upstream_entry,
    wait_until,
    write_config,
)

from proxy.fake.behaviour import Behaviour
from proxy.fake.server import FakeProvider

pytestmark = pytest.mark.e2e
pytest_plugins = ("e2e.e2e_fixtures",)

TIMEOUT = aiohttp.ClientTimeout(total=10)


@dataclass(frozen=True, slots=True)
class Result:
    sent: float
    done: float
    status: int
    upstream: str | None


class TwoUpstreams:
    """Fakes `a` and `b` behind one weighted route `chat`, and the gateway's config file."""

    def __init__(self, a: FakeProvider, b: FakeProvider, path: Path, watch: bool) -> None:
        self.a, self.b, self.path, self.watch = a, b, path, watch

    def config(self, weight_a: int, weight_b: int, tier: dict[str, int] | None = None) -> str:
        return tomli_w.dumps(
            config_dict(
                {"a": upstream_entry(self.a, "model-a"), "b": upstream_entry(self.b, "model-b")},
                {
                    "chat": {
                        "strategy": "weighted",
                        "tiers": [tier or {"a": weight_a, "b": weight_b}],
                    }
                },
                watch=self.watch,
            )
        )

    def save(self, weight_a: int, weight_b: int) -> None:
        replace_file(self.path, self.config(weight_a, weight_b))


async def two_upstreams(
    tmp_path: Path, fake_upstreams: FakeStarter, *, watch: bool, latency_s: float = 0.0
) -> TwoUpstreams:
    a = await fake_upstreams("a", Behaviour(latency_s=latency_s, chunks=2))
    b = await fake_upstreams("b", Behaviour(latency_s=latency_s, chunks=2))
    setup = TwoUpstreams(a, b, tmp_path / "gateway.toml", watch)
    setup.save(1, 0)
    return setup


async def send(session: aiohttp.ClientSession, gw: GatewayProcess, n: int = 5) -> list[Result]:
    """n sequential non-streaming chats; each result carries the chosen upstream."""
    out: list[Result] = []
    for _ in range(n):
        sent = time.monotonic()
        async with session.post(
            f"{gw.address}/v1/chat/completions",
            data=chat_body("chat", stream=False),
            headers={"Content-Type": "application/json"},
        ) as resp:
            await resp.read()
            out.append(
                Result(sent, time.monotonic(), resp.status, resp.headers.get("x-gateway-upstream"))
            )
    return out


def upstreams_of(results: list[Result]) -> set[str | None]:
    assert all(r.status == 200 for r in results), results
    return {r.upstream for r in results}


async def test_live_reload_under_load_shifts_traffic_without_errors(
    tmp_path: Path, fake_upstreams: FakeStarter, spawn_gateway: GatewayStarter
) -> None:
    setup = await two_upstreams(tmp_path, fake_upstreams, watch=True, latency_s=0.01)
    gw = spawn_gateway(setup.path)
    await gw.wait_ready()
    results: list[Result] = []
    run_until = time.monotonic() + 3.0
    edited: list[float] = []
    mark = gw.mark()

    async def client(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < run_until:
            results.extend(await send(session, gw, 1))

    async def editor() -> None:
        await asyncio.sleep(1.0)
        edited.append(time.monotonic())
        setup.save(0, 1)

    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        async with asyncio.timeout(20):
            await asyncio.gather(editor(), *(client(session) for _ in range(20)))
    edit_at = edited[0]
    reloaded = await gw.wait_event("config_reloaded", start=mark)
    assert reloaded["trigger"] == "file"
    assert gw.event_lines("config_reloaded", mark)[0].at - edit_at < 1.0
    assert reloaded.get("routes_changed") == ["chat"]

    failed = [r for r in results if r.status != 200]
    assert not failed, f"{len(failed)} of {len(results)} requests failed: {failed[:5]}"
    assert len(results) >= 100, len(results)
    before = [r for r in results if r.done < edit_at]
    after = [r for r in results if r.sent >= edit_at + 1.0]
    assert before
    assert after
    assert upstreams_of(before) == {"a"}
    # Within a second of the save every new request goes to the new upstream.
    assert upstreams_of(after) == {"b"}, [r for r in after if r.upstream != "b"][:5]
    assert len(setup.b.requests) >= len(after)
    assert all(r.json()["model"] == "model-b" for r in setup.b.requests)


async def test_broken_files_keep_the_running_config(
    tmp_path: Path, fake_upstreams: FakeStarter, spawn_gateway: GatewayStarter
) -> None:
    setup = await two_upstreams(tmp_path, fake_upstreams, watch=True)
    gw = spawn_gateway(setup.path)
    await gw.wait_ready()
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        assert upstreams_of(await send(session, gw)) == {"a"}

        # 1. A TOML syntax error (cut mid-table, as a half-written save would be).
        mark = gw.mark()
        good = setup.config(0, 1)
        replace_file(setup.path, good + "\n[routes.other\ntiers = [{ a = \n")
        failed = await gw.wait_event("config_reload_failed", start=mark)
        errors = failed["errors"]
        assert isinstance(errors, list)
        assert any("TOML syntax" in e and "line" in e for e in errors), errors
        assert failed["kept_generation"] == 1
        assert upstreams_of(await send(session, gw)) == {"a"}

        # 2. Valid TOML, invalid meaning: a tier names an upstream that does not exist.
        mark = gw.mark()
        replace_file(setup.path, setup.config(0, 0, tier={"a": 0, "nope": 1}))
        failed = await gw.wait_event("config_reload_failed", start=mark)
        errors = failed["errors"]
        assert isinstance(errors, list)
        assert any(e.startswith("routes.chat.tiers[0]") and '"nope"' in e for e in errors), errors
        assert upstreams_of(await send(session, gw)) == {"a"}
        assert not gw.events("config_reloaded")

        # 3. The next valid save is applied (the watcher survived two bad files).
        mark = gw.mark()
        replace_file(setup.path, good)
        reloaded = await gw.wait_event("config_reloaded", start=mark)
        assert reloaded["generation"] == 2
        assert upstreams_of(await send(session, gw)) == {"b"}

        # 4. Broken, then put back exactly as it was: the last word says the config is fine.
        mark = gw.mark()
        replace_file(setup.path, good + "\n[routes.other\n")
        await gw.wait_event("config_reload_failed", start=mark)
        mark = gw.mark()
        replace_file(setup.path, good)
        unchanged = await gw.wait_event("config_unchanged", start=mark)
        assert unchanged["outcome"] == "unchanged, config OK"
        assert unchanged["after_failure"] is True and unchanged["generation"] == 2
        assert unchanged["level"] == "info"


async def test_sighup_reloads_when_watch_is_off(
    tmp_path: Path, fake_upstreams: FakeStarter, spawn_gateway: GatewayStarter
) -> None:
    setup = await two_upstreams(tmp_path, fake_upstreams, watch=False)
    gw = spawn_gateway(setup.path)
    await gw.wait_ready()
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        assert upstreams_of(await send(session, gw)) == {"a"}
        setup.save(0, 1)
        await asyncio.sleep(0.5)  # ten times the watcher's debounce: nothing may happen
        assert not gw.events("config_reloaded")
        assert not gw.events("config_reload_failed")
        assert upstreams_of(await send(session, gw)) == {"a"}

        mark = gw.mark()
        gw.signal(signal.SIGHUP)
        reloaded = await gw.wait_event("config_reloaded", start=mark)
        assert reloaded["trigger"] == "SIGHUP"
        assert upstreams_of(await send(session, gw)) == {"b"}

        # A SIGHUP with nothing changed is harmless, and says so.
        mark = gw.mark()
        gw.signal(signal.SIGHUP)
        unchanged = await gw.wait_event("config_unchanged", start=mark)
        assert unchanged["trigger"] == "SIGHUP" and unchanged["after_failure"] is False
        assert not gw.events("config_reloaded", mark)
        assert not gw.events("config_reload_failed", mark)
        assert upstreams_of(await send(session, gw)) == {"b"}
        assert gw.proc.poll() is None


async def test_rapid_saves_last_content_wins(
    tmp_path: Path, fake_upstreams: FakeStarter, spawn_gateway: GatewayStarter
) -> None:
    """I5: ten saves within ~100 ms give few reloads, and the last content is what runs."""
    setup = await two_upstreams(tmp_path, fake_upstreams, watch=True)
    gw = spawn_gateway(setup.path)
    await gw.wait_ready()
    mark = gw.mark()
    for i in range(10):  # alternate a and b; the last save (i = 9) says b
        setup.save(*((0, 1) if i % 2 else (1, 0)))
        await asyncio.sleep(0.01)
    await gw.wait_event("config_reloaded", start=mark)
    await asyncio.sleep(0.5)  # let any trailing batch be applied
    reloads = gw.events("config_reloaded", mark)
    assert 1 <= len(reloads) <= 3, reloads
    assert not gw.events("config_reload_failed", mark)
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        assert upstreams_of(await send(session, gw)) == {"b"}


async def test_streams_in_flight_finish_on_the_old_config(
    tmp_path: Path, fake_upstreams: FakeStarter, spawn_gateway: GatewayStarter
) -> None:
    """I6: a reload while streams run cuts none of them; new requests use the new config."""
    a = await fake_upstreams("a", Behaviour(chunks=8, chunk_delay_s=0.1))
    b = await fake_upstreams("b", Behaviour(chunks=2))
    path = tmp_path / "gateway.toml"

    def config(up: str) -> dict[str, object]:
        return config_dict(
            {"a": upstream_entry(a, "model-a"), "b": upstream_entry(b, "model-b")},
            {"chat": {"tiers": [{up: 1}]}},
            watch=True,
        )

    write_config(path, config("a"))
    gw = spawn_gateway(path)
    await gw.wait_ready()

    async def stream(session: aiohttp.ClientSession) -> tuple[str | None, bytes]:
        async with session.post(
            f"{gw.address}/v1/chat/completions",
            data=chat_body("chat", stream=True),
            headers={"Content-Type": "application/json"},
        ) as resp:
            assert resp.status == 200
            return resp.headers.get("x-gateway-upstream"), await resp.read()

    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        running = asyncio.gather(*(stream(session) for _ in range(20)))
        await wait_until("20 streams running on a", lambda: a.inflight == 20)
        mark = gw.mark()
        write_config(path, config("b"))
        await gw.wait_event("config_reloaded", start=mark)
        assert upstreams_of(await send(session, gw, 2)) == {"b"}
        async with asyncio.timeout(10):
            done = await running
    for upstream, body in done:
        assert upstream == "a"
        assert body.endswith(b"data: [DONE]\n\n"), body[-200:]
        assert b'"error"' not in body
