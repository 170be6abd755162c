"""Price lookup (own price, shipped table, provider prefixes) and cost with cached tokens."""

from __future__ import annotations

import pytest

from proxy.config.compiler import compile_data
from proxy.config.values import Price, Upstream
from proxy.core.exchange import Usage
from proxy.governance.prices import cost, estimate_cost, price_of, table_from
from proxy.governance.pricetable import retrieved, shipped


def make_upstream(model: str | None, price: Price | None = None) -> Upstream:
    up: dict[str, object] = {"base_url": "http://127.0.0.1:9/v1"}
    if model is not None:
        up["model"] = model
    if price is not None:
        up["price"] = {
            "input_per_mtok": price.input_per_mtok,
            "output_per_mtok": price.output_per_mtok,
        }
    config = compile_data({"upstreams": {"u": up}, "routes": {"r": {"tiers": [{"u": 1}]}}}, {})
    return config.upstreams["u"]


def test_shipped_table_knows_common_models() -> None:
    table = shipped()
    assert len(table) > 1000
    mini = table["gpt-4o-mini"]
    assert mini.input_per_mtok == pytest.approx(0.15)
    assert mini.output_per_mtok == pytest.approx(0.60)
    assert mini.cached_input_per_mtok == pytest.approx(0.075)
    assert retrieved().startswith("20")


def test_own_price_overrides_the_table() -> None:
    own = Price(input_per_mtok=1.0, output_per_mtok=2.0)
    assert price_of(make_upstream("gpt-4o-mini", own), shipped()) == own
    assert price_of(make_upstream("gpt-4o-mini"), shipped()) == shipped()["gpt-4o-mini"]
    assert price_of(make_upstream("openai/gpt-4o-mini"), shipped()) == shipped()["gpt-4o-mini"]
    assert price_of(make_upstream("no-such-model"), shipped()) is None
    assert price_of(make_upstream(None), shipped()) is None


def test_cost_with_cached_tokens() -> None:
    p = Price(input_per_mtok=0.15, output_per_mtok=0.60, cached_input_per_mtok=0.075)
    u = Usage(tokens_in=1_000_000, tokens_out=1_000_000, tokens_cached=400_000)
    assert cost(u, p) == pytest.approx(0.6 * 0.15 + 0.4 * 0.075 + 0.60)
    no_cached_price = Price(input_per_mtok=0.15, output_per_mtok=0.60)
    assert cost(u, no_cached_price) == pytest.approx(0.15 + 0.60)
    assert cost(u, None) == 0.0
    assert estimate_cost(1000, 1000, p) == pytest.approx(0.00075)


def test_cache_writes_cost_the_cache_write_price() -> None:
    price = Price(
        input_per_mtok=3.0,
        output_per_mtok=15.0,
        cached_input_per_mtok=0.3,
        cache_write_per_mtok=3.75,
    )
    u = Usage(tokens_in=1_000_000, tokens_out=0, tokens_cached=500_000, tokens_cache_write=200_000)
    # 300k fresh at 3.00, 500k read at 0.30, 200k written at 3.75
    assert cost(u, price) == pytest.approx(0.9 + 0.15 + 0.75)
    # Without a cache-write price, written tokens cost the input price.
    assert cost(u, Price(input_per_mtok=3.0, output_per_mtok=15.0)) == pytest.approx(3.0)


def test_table_rows_may_carry_a_cache_write_price() -> None:
    table = table_from({"models": {"m": [3.0, 15.0, 0.3, 3.75], "n": [1.0, 2.0]}})
    assert table["m"].cache_write_per_mtok == 3.75
    assert table["n"].cache_write_per_mtok is None and table["n"].cached_input_per_mtok is None
