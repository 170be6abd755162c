"""Context rules and A/B splits through the in-process gateway: route header, arm, ledger."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import orjson
from conftest import FakeFactory, GatewayFactory, base_config, upstream
from multidict import CIMultiDict

from proxy.governance.ledgerquery import report


async def post(
    url: str, body: dict[str, object], headers: dict[str, str] | None = None
) -> tuple[int, CIMultiDict[str], bytes]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(url + "/v1/chat/completions", data=orjson.dumps(body), headers=headers) as r,
    ):
        return r.status, r.headers.copy(), await r.read()


def chat(content: str = "hi", **extra: object) -> dict[str, object]:
    return {"model": "chat", "messages": [{"role": "user", "content": content}], **extra}


async def test_rules_send_requests_to_other_routes(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    small, big, tool = await fakes("small"), await fakes("big"), await fakes("tool")
    routes = {
        "chat": {
            "tiers": [{"small": 1}],
            "rules": [
                {"if": {"min_tokens": 500}, "then": "long"},
                {"if": {"tools": True}, "then": "tools"},
                {"if": {"header": {"x-tier": "gold"}}, "then": "long"},
            ],
        },
        "long": {"tiers": [{"big": 1}]},
        "tools": {"tiers": [{"tool": 1}]},
    }
    ups: dict[str, object] = {f.name: upstream(f) for f in (small, big, tool)}
    gw = await gateway(base_config(ups, routes))
    status, headers, body = await post(gw.url, chat())
    assert (status, headers["x-gateway-upstream"]) == (200, "small")
    assert "x-gateway-route" not in headers
    status, headers, body = await post(gw.url, chat("x" * 4000))
    assert (status, headers["x-gateway-upstream"], headers["x-gateway-route"]) == (
        200,
        "big",
        "long",
    )
    assert orjson.loads(body)["model"] == "big-model"  # the target route's upstream model
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    status, headers, _ = await post(gw.url, chat(tools=tools))
    assert (status, headers["x-gateway-route"]) == (200, "tools")
    status, headers, _ = await post(gw.url, chat(), {"x-tier": "gold"})
    assert (status, headers["x-gateway-route"]) == (200, "long")
    assert len(small.requests) == 1 and len(big.requests) == 2 and len(tool.requests) == 1


async def test_split_is_sticky_in_header_and_ledger(
    tmp_path: Path, fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a, b = await fakes("a"), await fakes("b")
    routes = {
        "chat": {"split": {"chat-a": 50, "chat-b": 50}, "split_key": "user"},
        "chat-a": {"tiers": [{"a": 1}]},
        "chat-b": {"tiers": [{"b": 1}]},
    }
    cfg = base_config({"a": upstream(a), "b": upstream(b)}, routes)
    cfg["server"]["ledger"] = "usage.db"  # type: ignore[index]
    gw = await gateway(cfg)
    arms: dict[str, set[str]] = {}
    for i in range(24):
        user = f"user-{i % 8}"
        status, headers, _ = await post(gw.url, chat(user=user))
        assert status == 200
        assert headers["x-gateway-route"] == headers["x-gateway-arm"]
        assert headers["x-gateway-upstream"] == headers["x-gateway-arm"][-1]
        arms.setdefault(user, set()).add(headers["x-gateway-arm"])
    assert all(len(v) == 1 for v in arms.values())
    assert set().union(*arms.values()) == {"chat-a", "chat-b"}
    await gw.server.shutdown()  # flushes the ledger
    by_arm = {r["arm"]: r["requests"] for r in report(tmp_path / "usage.db", "arm", 0.0)}
    expected = {arm: 0 for arm in ("chat-a", "chat-b")}
    for (arm,) in arms.values():
        expected[arm] += 3
    assert by_arm == expected
