"""Tests for proxy.ops.metrics: what one settled exchange adds, labels from configured names."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from proxy.config.compiler import compile_data
from proxy.config.values import Endpoint
from proxy.core.exchange import Exchange, Peek, Usage
from proxy.core.failures import FailureKind
from proxy.ops.explain import header
from proxy.ops.metrics import Metrics
from proxy.ops.recent import RecentTraces
from proxy.routing.stats import Health


def exchange(model: str = "chat", rid: str = "r1") -> Exchange:
    data: dict[str, Any] = {
        "upstreams": {
            "a": {"base_url": "http://127.0.0.1:9/v1"},
            "b": {"base_url": "http://127.0.0.1:9/v1"},
        },
        "routes": {"chat": {"tiers": [{"a": 1}, {"b": 1}]}},
    }
    cfg = compile_data(data, {})
    return Exchange(
        id=rid,
        endpoint=Endpoint.CHAT,
        snap=cfg,
        started=time.monotonic() - 0.5,
        client_headers={},
        peek=Peek(model=model, stream=True, include_usage=False, has_stream_options=False),
        route=cfg.routes.get(model),
    )


def scrape(m: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = m.exposition().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def test_failover_then_success_records_every_series() -> None:
    ex = exchange()
    ex.attempts = 2
    ex.failed.append(("a", FailureKind.CONNECT))
    ex.upstream, ex.status, ex.ttfb_s = "b", 200, 0.2
    ex.usage = Usage(tokens_in=11, tokens_out=7)
    ex.key_name, ex.cost_usd = "team-a", 0.25
    m = Metrics()
    m.record(ex, time.monotonic())
    m.record(ex, time.monotonic())  # the cached label children count on
    s = scrape(m)
    labels = {"route": "chat", "upstream": "b", "status_class": "2xx", "stream": "true"}
    assert s["gateway_requests_total", frozenset(labels.items())] == 2
    assert (
        s["gateway_attempts_total", frozenset({"upstream": "a", "outcome": "connect"}.items())] == 2
    )
    assert (
        s["gateway_attempts_total", frozenset({"upstream": "b", "outcome": "answered"}.items())]
        == 2
    )
    assert (
        s["gateway_failovers_total", frozenset({"route": "chat", "kind": "connect"}.items())] == 2
    )
    tokens_out = frozenset({"route": "chat", "key": "team-a", "direction": "out"}.items())
    assert s["gateway_tokens_total", tokens_out] == 14
    assert s["gateway_cost_usd_total", frozenset({"route": "chat", "key": "team-a"}.items())] == 0.5
    assert s["gateway_upstream_ttfb_seconds_count", frozenset({"upstream": "b"}.items())] == 2


def test_unknown_model_never_becomes_a_label() -> None:
    ex = exchange(model="gpt-secret-unknown")
    ex.status = 404
    m = Metrics()
    m.record(ex, time.monotonic())
    text = m.exposition().decode()
    assert "gpt-secret-unknown" not in text
    assert 'route=""' in text


def test_gateway_and_provider_429s_are_told_apart() -> None:
    m = Metrics()
    ex = exchange()
    ex.attempts, ex.status, ex.upstream = 1, 429, "a"
    ex.failed.append(("a", FailureKind.RATE_LIMITED))
    m.record(ex, time.monotonic())
    s = scrape(m)
    by = "refused_by"
    assert (
        s["gateway_rate_limited_total", frozenset({by: "provider", "upstream": "a"}.items())] == 1
    )
    assert s["gateway_rate_limited_total", frozenset({by: "gateway", "upstream": ""}.items())] == 1


def test_recent_traces_keep_the_last_n() -> None:
    recent = RecentTraces(keep=2)
    for i in range(3):
        recent.record(exchange(rid=f"r{i}"), 0.1)
    assert recent.get("r0") is None
    doc = recent.get("r2")
    assert doc is not None and doc["route"] == "chat"


def test_explain_header_is_compact_and_capped() -> None:
    ex = exchange()
    ex.considered = (("a", 0, "ejected"), ("b", 1, "score:0.0100"))
    assert header(ex) == "route=chat; cand a/0=ejected b/1=score:0.0100"
    ex.considered = tuple((f"u{i}" * 50, 0, "x") for i in range(100))
    assert len(header(ex)) == 4000


def test_drained_is_a_health_state() -> None:
    from proxy.config.values import Ejection
    from proxy.routing.stats import UpstreamStats

    st = UpstreamStats("a", "fp", Ejection())
    st.drained = True
    assert st.health(0.0) is Health.DRAINED and not st.available(0.0)


def test_cache_tokens_by_route_key_and_upstream() -> None:
    ex = exchange()
    ex.attempts, ex.upstream, ex.status = 1, "a", 200
    ex.usage = Usage(tokens_in=100, tokens_out=5, tokens_cached=60, tokens_cache_write=30)
    ex.key_name = "team-a"
    m = Metrics()
    m.record(ex, time.monotonic())
    ex.usage = Usage(tokens_in=100, tokens_out=5)  # no cache use: no cache series touched
    m.record(ex, time.monotonic())
    s = scrape(m)
    base = {"route": "chat", "key": "team-a", "upstream": "a"}
    assert s[("gateway_cache_tokens_total", frozenset({**base, "kind": "read"}.items()))] == 60
    assert s[("gateway_cache_tokens_total", frozenset({**base, "kind": "write"}.items()))] == 30
