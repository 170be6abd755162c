"""Tests for proxy.config.agent: a route's keepalive, cache hygiene and affinity settings."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.config.agent import AgentTraffic, Hygiene
from proxy.config.compiler import compile_data
from proxy.config.values import ConfigError

UPS = {"a": {"base_url": "http://127.0.0.1:9001/v1", "model": "m"}}


def route_of(**route: Any) -> AgentTraffic | None:
    snap = compile_data({"upstreams": UPS, "routes": {"r": {"tiers": [{"a": 1}], **route}}}, {})
    return snap.routes["r"].agent


def errors_of(**route: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        route_of(**route)
    return list(info.value.errors)


def test_a_route_without_agent_settings_costs_nothing() -> None:
    assert route_of() is None


def test_settings_are_read_with_their_defaults() -> None:
    agent = route_of(
        keepalive_s=15,
        affinity="prompt_cache",
        cache_hygiene={"sort_tools": True, "max_breakpoints": 4},
    )
    assert agent == AgentTraffic(
        keepalive_s=15.0,
        affinity="prompt_cache",
        cache_hygiene=Hygiene(sort_tools=True, max_breakpoints=4),
    )
    assert agent.affinity_header == "x-session-id" and agent.affinity_ttl_s == 300


def test_hygiene_with_every_switch_off_is_none() -> None:
    agent = route_of(cache_hygiene={"sort_tools": False})
    assert agent is not None and agent.cache_hygiene is None


@pytest.mark.parametrize(
    ("route", "error"),
    [
        ({"keepalive_s": 0}, "routes.r.keepalive_s: must be a number >= 0.001"),
        ({"affinity": "sticky"}, "routes.r.affinity: must be one of prompt_cache"),
        ({"affinity_header": "x-s"}, 'routes.r.affinity_header: needs affinity = "prompt_cache"'),
        (
            {"cache_hygiene": {"max_breakpoints": 5}},
            "cache_hygiene.max_breakpoints: must be 1 .. 4",
        ),
        ({"cache_hygiene": {"sort_tool": True}}, 'did you mean "sort_tools"?'),
        ({"cache_hygiene": True}, "routes.r.cache_hygiene: must be a table"),
        ({"keepalive": 15}, 'routes.r.keepalive: unknown setting; did you mean "keepalive_s"?'),
    ],
)
def test_errors_name_their_path(route: dict[str, Any], error: str) -> None:
    errors = errors_of(**route)
    assert any(error in e for e in errors), errors
