"""`POST /v1/responses` through the gateway with the official openai SDK: pass-through, failover."""

from __future__ import annotations

import openai
import orjson
import pytest
from conftest import FakeFactory, GatewayFactory, base_config, upstream

from proxy.fake.behaviour import Behaviour
from proxy.ops import logs

BOUND = 10.0


def sdk(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url + "/v1", api_key="c", max_retries=0, timeout=BOUND)


async def test_non_stream_and_stream_pass_through_with_usage(
    fakes: FakeFactory, gateway: GatewayFactory, capfd: pytest.CaptureFixture[str]
) -> None:
    fake = await fakes("o", default=Behaviour(text="hello world", chunks=2, prompt_tokens=7))
    gw = await gateway(base_config({"o": upstream(fake)}, {"chat": {"tiers": [{"o": 1}]}}))
    async with sdk(gw.url) as client:
        res = await client.responses.create(model="chat", input="hi", instructions="be brief")
        stream = await client.responses.create(model="chat", input="hi", stream=True)
        kinds = [ev.type async for ev in stream]
    assert res.output_text == "hello world"
    assert res.usage is not None and res.usage.input_tokens == 7
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") == 2
    seen = fake.requests[0]
    assert seen.path == "/v1/responses"
    sent = seen.json()
    assert sent["model"] == "o-model" and sent["instructions"] == "be brief"
    assert "stream_options" not in fake.requests[1].json()  # not a chat option: nothing added
    logs.flush()
    lines = [orjson.loads(x) for x in capfd.readouterr().out.splitlines() if x.startswith("{")]
    access = [x for x in lines if x["event"] == "access"]
    assert [(x["endpoint"], x["tokens_in"], x["tokens_out"]) for x in access] == [
        ("responses", 7, 2),
        ("responses", 7, 2),
    ]


@pytest.mark.parametrize("stream", [False, True])
async def test_fails_over_before_the_commit_point(
    fakes: FakeFactory, gateway: GatewayFactory, stream: bool
) -> None:
    bad = await fakes("bad", default=Behaviour(status=503))
    good = await fakes("good", default=Behaviour(text="ok", chunks=1))
    gw = await gateway(
        base_config(
            {"bad": upstream(bad), "good": upstream(good)},
            {"chat": {"tiers": [{"bad": 1}, {"good": 1}]}},
        )
    )
    async with sdk(gw.url) as client:
        if stream:
            s = await client.responses.create(model="chat", input="hi", stream=True)
            kinds = [ev.type async for ev in s]
            assert kinds[-1] == "response.completed"
        else:
            res = await client.responses.create(model="chat", input="hi")
            assert res.output_text == "ok"
    assert (len(bad.requests), len(good.requests)) == (1, 1)


async def test_upstreams_without_responses_are_skipped_and_a_route_of_none_is_400(
    fakes: FakeFactory, gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANT_KEY", "sk-ant-x")
    plain = await fakes("plain")
    full = await fakes("full", default=Behaviour(text="ok", chunks=1))
    claude = await fakes("claude", dialect="anthropic")
    ups = {
        # A preset whose servers lack the Responses API, pointed at the fake.
        "plain": {"provider": "mistral", "base_url": plain.base_url},
        "full": upstream(full),
        "claude": {
            "provider": "anthropic",
            "base_url": claude.base_url + "/v1",
            "credential": "env:ANT_KEY",
        },
    }
    routes: dict[str, object] = {
        "mixed": {"tiers": [{"plain": 1}, {"full": 1}]},
        "claude": {"tiers": [{"claude": 1}]},
    }
    gw = await gateway(base_config(ups, routes))
    async with sdk(gw.url) as client:
        res = await client.responses.create(model="mixed", input="hi")
        assert res.output_text == "ok"
        with pytest.raises(openai.BadRequestError) as caught:
            await client.responses.create(model="claude", input="hi")
    assert (
        isinstance(caught.value.body, dict) and caught.value.body["code"] == "unsupported_endpoint"
    )
    assert plain.requests == [] and claude.requests == []
