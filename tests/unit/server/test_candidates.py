"""Tests for proxy.server.candidates: who may have the trace, and each member's verdict."""

from __future__ import annotations

from typing import Any

from proxy.config.compiler import compile_data
from proxy.config.values import Config
from proxy.routing.stats import StatsRegistry
from proxy.server.candidates import considered, explain_allowed


def snap(explain: bool = False) -> Config:
    data: dict[str, Any] = {
        "server": {"explain": explain},
        "upstreams": {
            n: {"base_url": "http://127.0.0.1:9/v1", **({"max_inflight": 1} if n == "e" else {})}
            for n in "abcde"
        },
        "routes": {"chat": {"tiers": [{"a": 1, "b": 2, "c": 0}, {"d": 1, "e": 1}]}},
        "admin": {"token": "env:ADM"},
    }
    return compile_data(data, {"ADM": "tok"})


def test_explain_needs_config_or_the_admin_token() -> None:
    assert not explain_allowed({"x-gateway-explain": "1"}, snap())
    assert explain_allowed({"x-gateway-explain": "1", "x-gateway-admin-token": "tok"}, snap())
    assert not explain_allowed({"x-gateway-explain": "1", "x-gateway-admin-token": "no"}, snap())
    assert explain_allowed({"x-gateway-explain": "1"}, snap(explain=True))
    assert not explain_allowed({"x-gateway-explain": "0"}, snap(explain=True))


def test_each_member_gets_a_score_or_a_reason() -> None:
    cfg = snap()
    reg = StatsRegistry()
    reg.reconcile(cfg.upstreams.values())
    now = 100.0
    ups = cfg.upstreams
    reg.get(ups["a"]).ejected_until = now + 10
    reg.get(ups["b"]).limited_until = now + 5
    reg.get(ups["d"]).drained = True
    reg.get(ups["e"]).inflight = 1
    verdicts = {u: why for u, _t, why in considered(cfg.routes["chat"], reg, ["a"], now)}
    assert verdicts == {
        "a": "tried,ejected",
        "b": "paused_429",
        "c": "weight_0",
        "d": "drained",
        "e": "busy_max_inflight",
    }
