"""Cache hygiene on a route: what the upstream receives; routes without it pass bytes as sent."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest
from conftest import FakeFactory, GatewayFactory, base_config

from proxy.fake.behaviour import Behaviour

BOUND = aiohttp.ClientTimeout(total=10)
CC = {"type": "ephemeral", "ttl": "1h"}


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_TEST_KEY", "sk-ant-hygiene")


def messages_body() -> dict[str, Any]:
    block = {"type": "text", "text": "x", "cache_control": CC}
    return {
        "model": "MODEL",
        "max_tokens": 8,
        "tools": [
            {"name": "zed", "input_schema": {"type": "object"}},
            {"name": "abc", "input_schema": {"type": "object"}, "cache_control": CC},
        ],
        "system": [block, block],
        "messages": [{"role": "user", "content": [block, block, block]}],
    }


@pytest.mark.parametrize("hygiene", [True, False])
async def test_upstream_sees_the_tidied_body_and_the_beta_header(
    fakes: FakeFactory, gateway: GatewayFactory, hygiene: bool
) -> None:
    fake = await fakes("c", dialect="anthropic", default=Behaviour(chunks=1))
    up = {
        "provider": "anthropic",
        "base_url": fake.base_url + "/v1",
        "credential": "env:ANTHROPIC_TEST_KEY",
        "model": "claude-x",
    }
    route: dict[str, object] = {"tiers": [{"c": 1}]}
    if hygiene:
        route["cache_hygiene"] = {"sort_tools": True, "max_breakpoints": 4, "strip_cache_ttl": True}
    gw = await gateway(base_config({"c": up}, {"tidy": route}))
    body = messages_body()
    body["model"] = "tidy"
    beta = "prompt-caching-2024-07-31,extended-cache-ttl-2025-04-11"
    async with (
        aiohttp.ClientSession(timeout=BOUND) as s,
        s.post(
            gw.url + "/v1/messages", data=orjson.dumps(body), headers={"anthropic-beta": beta}
        ) as r,
    ):
        assert r.status == 200
    seen = fake.requests[-1]
    assert seen.header("anthropic-beta") == beta
    sent: Any = seen.json()
    marks = [b for part in ("tools", "system") for b in sent[part] if "cache_control" in b]
    marks += [b for b in sent["messages"][0]["content"] if "cache_control" in b]
    if hygiene:
        assert [t["name"] for t in sent["tools"]] == ["abc", "zed"]
        # 6 breakpoints, 4 kept: the earliest two (the tool list's, system[0]) dropped.
        assert len(marks) == 4
        assert "cache_control" not in sent["system"][0] and "cache_control" in sent["system"][1]
        assert all(m["cache_control"] == {"type": "ephemeral"} for m in marks)
    else:
        assert [t["name"] for t in sent["tools"]] == ["zed", "abc"]
        assert len(marks) == 6 and marks[0]["cache_control"] == CC
