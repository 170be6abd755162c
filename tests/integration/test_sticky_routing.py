"""Sticky routing through the in-process gateway: same session, same upstream; failover on."""

from __future__ import annotations

import aiohttp
import orjson
from conftest import FakeFactory, GatewayFactory, base_config, upstream
from multidict import CIMultiDict

from proxy.fake.behaviour import Behaviour


async def post(
    url: str, body: dict[str, object], headers: dict[str, str] | None = None
) -> tuple[int, CIMultiDict[str]]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(url + "/v1/chat/completions", data=orjson.dumps(body), headers=headers) as r,
    ):
        await r.read()
        return r.status, r.headers.copy()


def chat(**extra: object) -> dict[str, object]:
    return {"model": "chat", "messages": [{"role": "user", "content": "hi"}], **extra}


async def test_same_session_lands_on_same_upstream(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    ups = [await fakes(n) for n in ("a", "b", "c")]
    route = {
        "strategy": "sticky",
        "sticky_key": "header:x-session-id",
        "tiers": [{"a": 1, "b": 1, "c": 1}],
    }
    gw = await gateway(base_config({u.name: upstream(u) for u in ups}, {"chat": route}))
    seen: dict[str, set[str]] = {}
    for i in range(12):
        session = f"s{i % 4}"
        status, headers = await post(gw.url, chat(), {"x-session-id": session})
        assert status == 200
        seen.setdefault(session, set()).add(headers["x-gateway-upstream"])
    assert all(len(v) == 1 for v in seen.values())
    assert len(set().union(*seen.values())) >= 2  # four sessions do not all hash to one


async def test_user_key_and_failover_to_next_on_ring(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    ups = [await fakes(n) for n in ("a", "b", "c")]
    route = {"strategy": "sticky", "sticky_key": "user", "tiers": [{"a": 1, "b": 1, "c": 1}]}
    gw = await gateway(base_config({u.name: upstream(u) for u in ups}, {"chat": route}))
    status, headers = await post(gw.url, chat(user="alice"))
    assert status == 200
    home = headers["x-gateway-upstream"]
    by_name = {u.name: u for u in ups}
    by_name[home].script(Behaviour(status=500))
    status, headers = await post(gw.url, chat(user="alice"))
    assert status == 200
    assert headers["x-gateway-upstream"] != home
    assert headers["x-gateway-attempts"] == "2"
