"""Responses state affinity: previous_response_id goes to the upstream that stored it."""

from __future__ import annotations

import openai
import pytest
from conftest import FakeFactory, GatewayFactory, InProcessGateway, base_config, upstream

from proxy.fake.behaviour import Behaviour
from proxy.fake.server import FakeProvider


def sdk(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url + "/v1", api_key="k", max_retries=0, timeout=10.0)


async def start(
    fakes: FakeFactory, gateway: GatewayFactory
) -> tuple[list[FakeProvider], InProcessGateway]:
    fs = [await fakes(n, default=Behaviour(chunks=1)) for n in ("a", "b", "c")]
    ups: dict[str, object] = {f.name: upstream(f) for f in fs}
    route = {"strategy": "round_robin", "tiers": [{f.name: 1 for f in fs}]}
    return fs, await gateway(base_config(ups, {"chat": route}))


def home_of(fs: list[FakeProvider]) -> FakeProvider:
    return next(f for f in fs if f.requests)


async def test_follow_ups_go_where_the_response_was_stored(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    fs, gw = await start(fakes, gateway)
    async with sdk(gw.url) as client:
        first = await client.responses.create(model="chat", input="hi")
        home = home_of(fs)
        for _ in range(6):
            res = await client.responses.create(
                model="chat", input="more", previous_response_id=first.id
            )
            assert res.output_text
        # A stream's id is remembered from its response.created event.
        stream = await client.responses.create(
            model="chat", input="again", previous_response_id=first.id, stream=True
        )
        created = None
        async for event in stream:
            if event.type == "response.created":
                created = event.response.id
        assert created is not None
        await client.responses.create(model="chat", input="x", previous_response_id=created)
    assert len(home.requests) == 9
    assert all(not f.requests for f in fs if f is not home)
    # An id the gateway never relayed is routed as usual (the strategy picks).
    async with sdk(gw.url) as client:
        await client.responses.create(model="chat", input="x", previous_response_id="resp_zz")
    assert sum(len(f.requests) for f in fs if f is not home) == 1


async def test_an_unavailable_home_is_a_clear_error_not_a_404(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    fs, gw = await start(fakes, gateway)
    async with sdk(gw.url) as client:
        first = await client.responses.create(model="chat", input="hi")
        home = home_of(fs)
        home.script(Behaviour(status=429, retry_after="30"))
        with pytest.raises(openai.RateLimitError):  # the home's own 429, not another's 404
            await client.responses.create(model="chat", input="x", previous_response_id=first.id)
        with pytest.raises(openai.InternalServerError) as info:  # paused now: said so
            await client.responses.create(model="chat", input="x", previous_response_id=first.id)
    err = info.value
    assert err.status_code == 503
    assert err.code == "previous_response_unavailable"
    assert "rate limited" in err.message
    assert err.response.headers["retry-after"]
    assert len(home.requests) == 2 and all(not f.requests for f in fs if f is not home)


async def test_a_home_gone_from_the_route_is_a_409(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    fs, gw = await start(fakes, gateway)
    async with sdk(gw.url) as client:
        first = await client.responses.create(model="chat", input="hi")
        home = home_of(fs)
        others = [f for f in fs if f is not home]
        ups: dict[str, object] = {f.name: upstream(f) for f in fs}
        gw.write(base_config(ups, {"chat": {"tiers": [{f.name: 1 for f in others}]}}))
        assert await gw.reload()
        with pytest.raises(openai.ConflictError) as info:
            await client.responses.create(model="chat", input="x", previous_response_id=first.id)
    assert info.value.code == "previous_response_unavailable"
    assert all(not f.requests for f in others)
