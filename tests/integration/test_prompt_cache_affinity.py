"""Prompt-cache affinity through the gateway: a conversation stays put, moves on a fault."""

from __future__ import annotations

import aiohttp
import orjson
import pytest
from conftest import FakeFactory, GatewayFactory, base_config, upstream

from proxy.fake.behaviour import Behaviour
from proxy.fake.server import FakeProvider
from proxy.ops import logs

BOUND = aiohttp.ClientTimeout(total=10)
SYSTEM = [
    {
        "type": "text",
        "text": "You are a coding agent. " * 20,
        "cache_control": {"type": "ephemeral"},
    }
]


def turn_body(conversation: str, turns: int) -> dict[str, object]:
    messages: list[dict[str, object]] = [{"role": "user", "content": f"task {conversation}"}]
    for i in range(turns):
        messages += [
            {"role": "assistant", "content": f"step {i}"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": f"result {i}", "cache_control": {"type": "ephemeral"}}
                ],
            },
        ]
    return {"model": "agent", "system": SYSTEM, "messages": messages}


async def post(url: str, body: object, headers: dict[str, str] | None = None) -> int:
    async with (
        aiohttp.ClientSession(timeout=BOUND) as s,
        s.post(url + "/v1/chat/completions", data=orjson.dumps(body), headers=headers) as r,
    ):
        await r.read()
        return r.status


async def three(fakes: FakeFactory) -> list[FakeProvider]:
    return [await fakes(n, default=Behaviour(chunks=1)) for n in ("a", "b", "c")]


def config(fs: list[FakeProvider], **route: object) -> dict[str, object]:
    ups: dict[str, object] = {f.name: upstream(f) for f in fs}
    return base_config(
        ups,
        {
            "agent": {
                "strategy": "round_robin",
                "tiers": [{f.name: 1 for f in fs}],
                "affinity": "prompt_cache",
                **route,
            }
        },
    )


def served(fs: list[FakeProvider]) -> list[int]:
    return [len(f.requests) for f in fs]


async def test_fifty_turns_of_one_conversation_land_on_one_upstream(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    fs = await three(fakes)
    gw = await gateway(config(fs))
    for turn in range(50):
        assert await post(gw.url, turn_body("one", turn)) == 200
    assert sorted(served(fs)) == [0, 0, 50]


async def test_two_conversations_spread(fakes: FakeFactory, gateway: GatewayFactory) -> None:
    fs = await three(fakes)
    gw = await gateway(config(fs))
    for turn in range(10):
        assert await post(gw.url, turn_body("one", turn)) == 200
        assert await post(gw.url, turn_body("two", turn)) == 200
    assert sorted(served(fs)) == [0, 10, 10]


async def test_session_header_names_the_conversation(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    fs = await three(fakes)
    gw = await gateway(config(fs, affinity_header="x-agent-session"))
    for turn in range(12):
        # Different prompts, one session: the header wins over the prefix.
        body = turn_body(f"prompt-{turn}", 0)
        assert await post(gw.url, body, {"x-agent-session": "sess-1"}) == 200
    assert sorted(served(fs)) == [0, 0, 12]


async def test_a_429_on_the_pinned_upstream_moves_the_pin_and_says_why(
    fakes: FakeFactory, gateway: GatewayFactory, capfd: pytest.CaptureFixture[str]
) -> None:
    fs = await three(fakes)
    gw = await gateway(config(fs))
    for turn in range(3):
        assert await post(gw.url, turn_body("one", turn)) == 200
    home = next(f for f in fs if f.requests)
    home.script(Behaviour(status=429, retry_after="30"))
    capfd.readouterr()
    assert await post(gw.url, turn_body("one", 3)) == 200
    moved_to = [f for f in fs if f is not home and f.requests]
    assert len(moved_to) == 1
    # Later turns stay on the new upstream (the old one is paused anyway).
    for turn in range(4, 10):
        assert await post(gw.url, turn_body("one", turn)) == 200
    assert len(moved_to[0].requests) == 7 and len(home.requests) == 4
    logs.flush()
    lines = [orjson.loads(x) for x in capfd.readouterr().out.splitlines() if x.startswith("{")]
    moved = [x for x in lines if x.get("event") == "affinity_moved"]
    assert len(moved) == 1
    assert moved[0]["upstream"] == home.name and moved[0]["to"] == moved_to[0].name
    assert moved[0]["reason"] == "rate_limited"


async def test_an_ejected_pinned_upstream_breaks_the_pin_with_its_reason(
    fakes: FakeFactory, gateway: GatewayFactory, capfd: pytest.CaptureFixture[str]
) -> None:
    fs = await three(fakes)
    cfg = config(fs)
    cfg["defaults"] = {**cfg["defaults"], "ejection": {"consecutive_failures": 1}}  # type: ignore[dict-item]
    gw = await gateway(cfg)
    assert await post(gw.url, turn_body("one", 0)) == 200
    home = next(f for f in fs if f.requests)
    home.script(Behaviour(status=503))
    assert await post(gw.url, turn_body("one", 1)) == 200  # fails over; home is ejected
    capfd.readouterr()
    assert await post(gw.url, turn_body("one", 2)) == 200
    logs.flush()
    lines = [orjson.loads(x) for x in capfd.readouterr().out.splitlines() if x.startswith("{")]
    # The pin had already moved with the 503; nothing is pinned to the ejected upstream now.
    assert not [x for x in lines if x.get("event") == "affinity_broken"]
    assert len(home.requests) == 2
