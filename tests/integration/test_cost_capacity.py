"""`cost` and `capacity` strategies through the in-process gateway and fake providers."""

from __future__ import annotations

from conftest import FakeFactory, GatewayFactory, base_config, post_chat, upstream

from proxy.fake.behaviour import Behaviour

HI = [{"role": "user", "content": "hi"}]


async def test_cost_sends_to_the_cheapest_and_fails_over_to_the_next(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    cheap = await fakes("cheap")
    dear = await fakes("dear")
    ups: dict[str, object] = {
        "cheap": upstream(cheap, price={"input_per_mtok": 0.1, "output_per_mtok": 0.2}),
        "dear": upstream(dear, price={"input_per_mtok": 5.0, "output_per_mtok": 15.0}),
    }
    gw = await gateway(
        base_config(ups, {"chat": {"strategy": "cost", "tiers": [{"cheap": 1, "dear": 1}]}})
    )
    for _ in range(5):
        status, headers, _ = await post_chat(gw.url, {"model": "chat", "messages": HI})
        assert status == 200
        assert headers["x-gateway-upstream"] == "cheap"
    cheap.script(Behaviour(status=503))
    status, headers, _ = await post_chat(gw.url, {"model": "chat", "messages": HI})
    assert status == 200
    assert headers["x-gateway-upstream"] == "dear"
    assert float(headers["x-gateway-cost-usd"]) > 0
    assert len(dear.requests) == 1


async def test_capacity_spreads_by_headroom_then_answers_429(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    small = await fakes("small")
    big = await fakes("big")
    ups: dict[str, object] = {"small": upstream(small, rpm=2), "big": upstream(big, rpm=3)}
    gw = await gateway(
        base_config(ups, {"chat": {"strategy": "capacity", "tiers": [{"small": 1, "big": 1}]}})
    )
    seen = []
    for _ in range(5):
        status, headers, _ = await post_chat(gw.url, {"model": "chat", "messages": HI})
        assert status == 200
        seen.append(headers["x-gateway-upstream"])
    assert seen[0] == "big"
    assert sorted(seen) == ["big", "big", "big", "small", "small"]
    status, headers, body = await post_chat(gw.url, {"model": "chat", "messages": HI})
    assert status == 429
    assert 1 <= int(headers["Retry-After"]) <= 60
    assert b"rate_limit_exceeded" in body
    assert len(small.requests) == 2 and len(big.requests) == 3


async def test_capacity_follows_the_providers_remaining_headers(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes(
        "a",
        default=Behaviour(
            headers=(("x-ratelimit-remaining-requests", "0"), ("x-ratelimit-reset-requests", "30s"))
        ),
    )
    b = await fakes("b")
    ups: dict[str, object] = {"a": upstream(a, rpm=1000), "b": upstream(b, rpm=10)}
    gw = await gateway(
        base_config(ups, {"chat": {"strategy": "capacity", "tiers": [{"a": 1, "b": 1}]}})
    )
    first = await post_chat(gw.url, {"model": "chat", "messages": HI})
    assert first[1]["x-gateway-upstream"] == "a"  # the most declared headroom
    for _ in range(3):
        status, headers, _ = await post_chat(gw.url, {"model": "chat", "messages": HI})
        assert status == 200
        assert headers["x-gateway-upstream"] == "b"  # a said it has nothing left
    assert len(a.requests) == 1


async def test_capacity_tpm_counts_real_usage_not_the_reservation(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a", default=Behaviour(chunks=5, prompt_tokens=10))
    ups: dict[str, object] = {"a": upstream(a, tpm=100)}
    gw = await gateway(base_config(ups, {"chat": {"strategy": "capacity", "tiers": [{"a": 1}]}}))
    body = {"model": "chat", "max_tokens": 40, "messages": HI}
    got = [(await post_chat(gw.url, body))[0] for _ in range(5)]
    # Each reserves ~60 tokens at the attempt and settles to the real 15: three fit, not one.
    assert got == [200, 200, 200, 429, 429]
    assert len(a.requests) == 3
