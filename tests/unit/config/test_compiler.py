"""Tests for proxy.config.compiler and proxy.config.values: a valid file compiles, every error names its path."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from proxy.config.compiler import compile_data, compile_text, parse_listen
from proxy.config.values import (
    Config,
    ConfigError,
    Ejection,
    Server,
    Strategy,
    Timeouts,
)

SHIPPED = Path(__file__).parents[3] / "gateway.toml"

FULL = """
[server]
listen = "0.0.0.0:9000"
max_body_mb = 2
drain_timeout_s = 15
workers = 4
access_log = false
log_level = "debug"
watch = false

[defaults]
connect_timeout_s = 2
ttfb_timeout_s = 20
idle_timeout_s = 30
total_timeout_s = 600
max_attempts = 4
panic = false

[defaults.ejection]
consecutive_failures = 3
base_s = 5
max_s = 60
jitter = 0.1

[upstreams.a]
provider = "openai"
base_url = "https://api.example.com/v1/"
credential = "env:A_KEY"
model = "gpt-a"
ttfb_timeout_s = 10

[upstreams.a.ejection]
consecutive_failures = 2

[upstreams.b]
base_url = "http://10.0.0.2:8000/v1"

[upstreams.c]
base_url = "http://10.0.0.3:8000/v1"
model = "c-model"

[routes.chat-fast]
strategy = "latency"
tiers = [{ a = 3, b = 1 }, { c = 1 }]
idle_timeout_s = 5
max_attempts = 2

[routes.chat-backup]
strategy = "round_robin"
tiers = [{ c = 2, b = 0 }]
fallback = ["chat-fast"]
"""

SECRET = "sk-test-0123456789abcdef"


def ups(*names: str, **extra: dict[str, Any]) -> dict[str, Any]:
    """A minimal [upstreams] table: one valid upstream per name, with optional overrides."""
    out: dict[str, Any] = {}
    for i, name in enumerate(names):
        out[name] = {"base_url": f"http://127.0.0.1:{9001 + i}/v1", "model": f"m-{name}"}
        out[name].update(extra.get(name, {}))
    return out


def cfg(
    routes: dict[str, Any], upstreams: dict[str, Any] | None = None, **top: Any
) -> dict[str, Any]:
    data: dict[str, Any] = {"upstreams": upstreams or ups("a", "b", "c", "d"), "routes": routes}
    data.update(top)
    return data


def errors_of(data: dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        compile_data(data, env or {})
    assert str(info.value) == "\n".join(info.value.errors)
    return list(info.value.errors)


def one_route(**route: Any) -> dict[str, Any]:
    """One route on upstream b, so problems planted in upstream a stay the only errors."""
    return cfg({"r": {"tiers": [{"b": 1}], **route}})


# --- a full valid config ---------------------------------------------------------------------


@pytest.fixture
def full() -> Config:
    return compile_text(FULL, env={"A_KEY": SECRET})


def test_full_config_server(full: Config) -> None:
    assert full.server == Server(
        host="0.0.0.0",
        port=9000,
        max_body_bytes=2 * 2**20,
        drain_timeout_s=15.0,
        workers=4,
        access_log=False,
        log_level="debug",
        watch=False,
    )
    assert full.panic is False
    assert full.secrets == (SECRET,)


def test_full_config_upstream_inherits_defaults_and_overrides(full: Config) -> None:
    a = full.upstreams["a"]
    assert a.name == "a"
    assert a.provider == "openai"
    assert a.base_url == "https://api.example.com/v1"  # trailing slash stripped
    assert a.query == ""
    assert a.model == "gpt-a"
    assert a.credential == SECRET
    assert a.credential_ref == "env:A_KEY"
    assert a.timeouts == Timeouts(connect_s=2.0, ttfb_s=10.0, idle_s=30.0, total_s=600.0)
    assert a.ejection == Ejection(consecutive_failures=2, base_s=5.0, max_s=60.0, jitter=0.1)

    b = full.upstreams["b"]
    assert b.provider == "openai"
    assert b.model is None
    assert b.credential is None
    assert b.credential_ref is None
    assert b.timeouts == Timeouts(connect_s=2.0, ttfb_s=20.0, idle_s=30.0, total_s=600.0)
    assert b.ejection == Ejection(consecutive_failures=3, base_s=5.0, max_s=60.0, jitter=0.1)


def test_full_config_routes_tiers_weights_and_route_timeouts(full: Config) -> None:
    fast = full.routes["chat-fast"]
    assert fast.name == "chat-fast"
    assert fast.strategy is Strategy.LATENCY
    assert fast.max_attempts == 2
    assert fast.fallback == ()
    assert [t.key for t in fast.tiers] == ["chat-fast#0", "chat-fast#1"]
    assert all(t.origin == "chat-fast" and t.strategy is Strategy.LATENCY for t in fast.tiers)
    t0 = fast.tiers[0]
    assert [(m.upstream.name, m.weight) for m in t0.members] == [("a", 3), ("b", 1)]
    # defaults -> upstream -> route: idle comes from the route, ttfb from the upstream.
    assert t0.members[0].timeouts == Timeouts(connect_s=2.0, ttfb_s=10.0, idle_s=5.0, total_s=600.0)
    assert t0.members[1].timeouts == Timeouts(connect_s=2.0, ttfb_s=20.0, idle_s=5.0, total_s=600.0)
    assert t0.members[0].upstream is full.upstreams["a"]
    assert [(m.upstream.name, m.weight) for m in fast.tiers[1].members] == [("c", 1)]


def test_full_config_fallback_tiers_keep_their_own_strategy(full: Config) -> None:
    backup = full.routes["chat-backup"]
    assert backup.strategy is Strategy.ROUND_ROBIN
    assert backup.max_attempts == 4  # from [defaults]
    assert backup.fallback == ("chat-fast",)
    assert [t.key for t in backup.tiers] == ["chat-backup#0", "chat-fast#0", "chat-fast#1"]
    assert [t.origin for t in backup.tiers] == ["chat-backup", "chat-fast", "chat-fast"]
    assert [t.strategy for t in backup.tiers] == [
        Strategy.ROUND_ROBIN,
        Strategy.LATENCY,
        Strategy.LATENCY,
    ]
    assert [(m.upstream.name, m.weight) for m in backup.tiers[0].members] == [("c", 2), ("b", 0)]
    # The fallback tiers are the very tiers of the other route (its overrides included).
    assert backup.tiers[1] == full.routes["chat-fast"].tiers[0]


def test_full_config_mappings_are_read_only(full: Config) -> None:
    with pytest.raises(TypeError):
        full.routes["x"] = full.routes["chat-fast"]  # type: ignore[index]
    with pytest.raises(TypeError):
        full.upstreams["x"] = full.upstreams["a"]  # type: ignore[index]


def test_secret_never_in_repr_or_fingerprint(full: Config) -> None:
    assert SECRET not in repr(full)
    assert SECRET not in repr(full.upstreams["a"])
    assert SECRET not in full.upstreams["a"].fingerprint


def test_defaults_when_sections_are_missing() -> None:
    config = compile_data(cfg({"r": {"tiers": [{"a": 1}]}}), {})
    assert config.server == Server()
    assert config.panic is True
    assert config.secrets == ()
    route = config.routes["r"]
    assert route.strategy is Strategy.WEIGHTED
    assert route.max_attempts == 3
    assert config.upstreams["a"].timeouts == Timeouts()
    assert config.upstreams["a"].ejection == Ejection()
    assert route.tiers[0].members[0].timeouts == Timeouts()


@pytest.mark.parametrize("strategy", list(Strategy))
def test_every_strategy_compiles(strategy: Strategy) -> None:
    extra = {"sticky_key": "user"} if strategy is Strategy.STICKY else {}
    config = compile_data(one_route(strategy=strategy.value, **extra), {})
    assert config.routes["r"].strategy is strategy
    assert config.routes["r"].tiers[0].strategy is strategy


def test_fingerprint_tracks_what_stats_describe() -> None:
    base = compile_data(cfg({"r": {"tiers": [{"a": 1}]}}), {})
    same = compile_data(cfg({"r": {"tiers": [{"a": 5}]}}, ups("a", a={"ttfb_timeout_s": 3})), {})
    other_model = compile_data(cfg({"r": {"tiers": [{"a": 1}]}}, ups("a", a={"model": "x"})), {})
    with_key = compile_data(
        cfg({"r": {"tiers": [{"a": 1}]}}, ups("a", a={"credential": "env:K"})), {"K": "v1"}
    )
    other_key = compile_data(
        cfg({"r": {"tiers": [{"a": 1}]}}, ups("a", a={"credential": "env:K"})), {"K": "v2"}
    )
    fp = base.upstreams["a"].fingerprint
    assert same.upstreams["a"].fingerprint == fp
    assert other_model.upstreams["a"].fingerprint != fp
    assert with_key.upstreams["a"].fingerprint != fp
    assert other_key.upstreams["a"].fingerprint != with_key.upstreams["a"].fingerprint


def test_workers_auto_is_cpu_count() -> None:
    config = compile_data(cfg({"r": {"tiers": [{"a": 1}]}}, server={"workers": "auto"}), {})
    assert config.server.workers == (os.cpu_count() or 1)


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("[::1]:443", ("::1", 443)),
        ("localhost:65535", ("localhost", 65535)),
    ],
)
def test_listen_parses(listen: str, expected: tuple[str, int]) -> None:
    assert parse_listen(listen) == expected
    config = compile_data(cfg({"r": {"tiers": [{"a": 1}]}}, server={"listen": listen}), {})
    assert (config.server.host, config.server.port) == expected


@pytest.mark.parametrize(
    "listen", ["8080", ":8080", "host:", "host:65536", "host:-1", "host:80x", "", "a:²"]
)
def test_bad_listen(listen: str) -> None:
    assert parse_listen(listen) is None
    errs = errors_of(cfg({"r": {"tiers": [{"a": 1}]}}, server={"listen": listen}))
    assert errs == ['server.listen: must be "HOST:PORT" with a port from 0 to 65535']


def test_listen_not_a_string() -> None:
    errs = errors_of(cfg({"r": {"tiers": [{"a": 1}]}}, server={"listen": 8080}))
    assert errs == ['server.listen: must be "HOST:PORT" with a port from 0 to 65535']


def test_shipped_gateway_toml_compiles() -> None:
    config = compile_text(SHIPPED.read_text("utf-8"), env={})
    assert set(config.routes) >= {"chat-fast", "chat-weighted", "chat-reliable", "embed"}
    assert config.routes["chat-fast"].strategy is Strategy.LATENCY
    embed = config.routes["embed"]
    assert [t.key for t in embed.tiers] == ["embed#0", "chat-reliable#0", "chat-reliable#1"]
    assert config.upstreams["local-b"].timeouts.ttfb_s == 30.0
    weighted = config.routes["chat-weighted"].tiers[0]
    assert [(m.upstream.name, m.weight) for m in weighted.members] == [
        ("local-a", 3),
        ("local-b", 1),
    ]


# --- errors --------------------------------------------------------------------------------


def test_every_error_is_reported_at_once() -> None:
    data = {
        "server": {"listen": "nope", "colour": "blue", "log_level": "loud"},
        "defaults": {"max_attempts": 0, "ejection": {"base": 1}},
        "upstreams": {
            "a": {"base_url": "ftp://example.com"},
            "b": {"base_url": "http://127.0.0.1:9002/v1"},
        },
        "routes": {
            "chat-fast": {
                "strategy": "fastest",
                "tiers": [{"b": 1}, {"x": 1}],
                "fallback": ["nowhere"],
            },
        },
        "extra": 1,
    }
    errs = errors_of(data)
    assert errs == [
        "extra: unknown setting",
        "server.colour: unknown setting",
        'server.listen: must be "HOST:PORT" with a port from 0 to 65535',
        "server.log_level: must be one of debug, error, info, warning",
        'defaults.ejection.base: unknown setting; did you mean "base_s"?',
        "defaults.max_attempts: must be an integer >= 1",
        "upstreams.a.base_url: must be an http:// or https:// URL with a host",
        'routes.chat-fast.strategy: unknown strategy "fastest" '
        "(weighted | round_robin | latency | least_busy | cost | capacity | sticky)",
        'routes.chat-fast.fallback[0]: unknown route "nowhere"',
        'routes.chat-fast.tiers[1]: unknown upstream "x"',
    ]


def test_unknown_upstream_in_tier_names_its_path() -> None:
    errs = errors_of(cfg({"chat-fast": {"tiers": [{"a": 1}, {"x": 1}]}}))
    assert errs == ['routes.chat-fast.tiers[1]: unknown upstream "x"']


@pytest.mark.parametrize(
    ("section", "key", "hint"),
    [
        ("upstreams.a", "modle", "model"),
        ("routes.r", "stratgy", "strategy"),
        ("routes.r", "wieght", None),
        ("server", "port", None),
        ("server", "listne", "listen"),
        ("defaults", "retries", None),
        ("defaults", "max_attempt", "max_attempts"),
        ("upstreams.a.ejection", "jitterr", "jitter"),
    ],
)
def test_unknown_setting_keys(section: str, key: str, hint: str | None) -> None:
    data = one_route()
    node: dict[str, Any] = data
    for part in section.split("."):
        node = node.setdefault(part, {})
    node[key] = 1
    suffix = f'; did you mean "{hint}"?' if hint else ""
    assert errors_of(data) == [f"{section}.{key}: unknown setting{suffix}"]


@pytest.mark.parametrize("strategy", ["fastest", "Weighted", "", 3, True])
def test_bad_strategy(strategy: object) -> None:
    errs = errors_of(one_route(strategy=strategy))
    assert len(errs) == 1
    assert errs[0].startswith(f'routes.r.strategy: unknown strategy "{strategy}"')


@pytest.mark.parametrize("weight", [-1, 1.5, 2.0, True, False, "1", None, [1]])
def test_bad_weight(weight: object) -> None:
    errs = errors_of(cfg({"r": {"tiers": [{"a": 1, "b": weight}]}}))
    assert errs == ["routes.r.tiers[0].b: weight must be an integer >= 0"]


def test_weight_zero_is_allowed() -> None:
    config = compile_data(cfg({"r": {"tiers": [{"a": 0, "b": 1}]}}), {})
    assert [m.weight for m in config.routes["r"].tiers[0].members] == [0, 1]


@pytest.mark.parametrize("tier", [{}, [], "a", 1])
def test_bad_tier_shape(tier: object) -> None:
    errs = errors_of(cfg({"r": {"tiers": [{"a": 1}, tier]}}))
    assert errs == ["routes.r.tiers[1]: must be a non-empty table { upstream = weight }"]


def test_tiers_not_a_list() -> None:
    errs = errors_of(cfg({"r": {"tiers": {"a": 1}}}))
    assert errs == [
        "routes.r.tiers: must be a list of tables { upstream = weight }",
        "routes.r.tiers: a route needs at least one tier or a fallback",
    ]


def test_route_without_tiers_or_fallback() -> None:
    assert errors_of(cfg({"r": {}})) == [
        "routes.r.tiers: a route needs at least one tier or a fallback"
    ]


def test_no_routes() -> None:
    assert errors_of({"upstreams": ups("a")}) == ["routes: at least one route is required"]


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/v1",
        "example.com/v1",
        "http://",
        "https:///v1",
        "https://example.com/v1#frag",
        "https://user:pw@example.com/v1",
        "",
        5,
    ],
)
def test_bad_base_url(url: object) -> None:
    errs = errors_of(cfg({"r": {"tiers": [{"b": 1}]}}, ups("a", "b", a={"base_url": url})))
    assert errs
    assert errs[0].startswith("upstreams.a.base_url: must ")
    assert all(e.startswith("upstreams.a.base_url: ") for e in errs)


@pytest.mark.parametrize("url", ["http://h:99999/v1", "http://h:abc/v1", "http://h:-1/v1"])
def test_base_url_with_bad_port(url: str) -> None:
    # Accepted today, these fail on every request instead of at load time.
    errs = errors_of(cfg({"r": {"tiers": [{"b": 1}]}}, ups("a", "b", a={"base_url": url})))
    assert len(errs) == 1
    assert errs[0].startswith("upstreams.a.base_url: ")


def test_missing_base_url() -> None:
    raw = ups("a", "b")
    del raw["a"]["base_url"]
    errs = errors_of(cfg({"r": {"tiers": [{"b": 1}]}}, raw))
    assert errs == ["upstreams.a.base_url: is required"]


def test_unknown_provider() -> None:
    errs = errors_of(cfg({"r": {"tiers": [{"b": 1}]}}, ups("a", "b", a={"provider": "acme"})))
    assert len(errs) == 1
    assert errs[0].startswith('upstreams.a.provider: unknown provider "acme" (supported: openai, ')
    assert "anthropic, azure, bedrock, gemini, groq" in errs[0]


def test_credential_env_missing_names_the_variable_only() -> None:
    raw = ups("a", "b", a={"credential": "env:OPENAI_API_KEY"})
    env = {"OTHER": "sk-unrelated-secret"}
    errs = errors_of(cfg({"r": {"tiers": [{"b": 1}]}}, raw), env)
    assert errs == ["upstreams.a.credential: environment variable OPENAI_API_KEY is not set"]
    assert "sk-unrelated-secret" not in "\n".join(errs)


def test_credential_env_empty_counts_as_missing() -> None:
    raw = ups("a", "b", a={"credential": "env:K"})
    errs = errors_of(cfg({"r": {"tiers": [{"b": 1}]}}, raw), {"K": ""})
    assert errs == ["upstreams.a.credential: environment variable K is not set"]


@pytest.mark.parametrize("literal", ["sk-live-abcdef123456", "env:", "ENV:KEY", "Bearer sk-x"])
def test_literal_credential_is_refused_without_echoing_it(literal: str) -> None:
    raw = ups("a", "b", a={"credential": literal})
    with pytest.raises(ConfigError) as info:
        compile_data(cfg({"r": {"tiers": [{"b": 1}]}}, raw), {"KEY": "v"})
    assert info.value.errors == (
        'upstreams.a.credential: must be "env:VARIABLE" (secrets are not written in the file)',
    )
    if literal != "env:":
        assert literal not in str(info.value)


def test_credential_resolved_from_env() -> None:
    raw = ups("a", a={"credential": "env:K"})
    config = compile_data(cfg({"r": {"tiers": [{"a": 1}]}}, raw), {"K": SECRET})
    assert config.upstreams["a"].credential == SECRET
    assert config.secrets == (SECRET,)


def test_compile_text_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_TEST_KEY", SECRET)
    text = """
[upstreams.a]
base_url = "http://127.0.0.1:9/v1"
credential = "env:GW_TEST_KEY"
[routes.r]
tiers = [{ a = 1 }]
"""
    assert compile_text(text).upstreams["a"].credential == SECRET


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("defaults", "ttfb_timeout_s", 0, "must be a number >= 0.001"),
        ("defaults", "connect_timeout_s", -1, "must be a number >= 0.001"),
        ("defaults", "idle_timeout_s", "10", "must be a number >= 0.001"),
        ("defaults", "total_timeout_s", True, "must be a number >= 0.001"),
        ("defaults", "max_attempts", 1.5, "must be an integer >= 1"),
        ("defaults", "panic", "yes", "must be true or false"),
        ("server", "access_log", 1, "must be true or false"),
        ("server", "workers", 0, "must be an integer >= 1"),
        ("server", "workers", "many", "must be an integer >= 1"),
        ("server", "max_body_mb", 0, "must be a number >= 0.001"),
        ("server", "drain_timeout_s", -5, "must be a number >= 0"),
        ("upstreams.a", "ttfb_timeout_s", -1, "must be a number >= 0.001"),
        ("upstreams.a.ejection", "consecutive_failures", 0, "must be an integer >= 1"),
        ("defaults.ejection", "jitter", -0.1, "must be a number >= 0"),
        ("routes.r", "max_attempts", 0, "must be an integer >= 1"),
    ],
)
def test_bad_values_name_their_path(section: str, key: str, value: object, message: str) -> None:
    data = one_route()
    node: dict[str, Any] = data
    for part in section.split("."):
        node = node.setdefault(part, {})
    node[key] = value
    assert errors_of(data) == [f"{section}.{key}: {message}"]


@pytest.mark.parametrize("section", ["server", "defaults", "upstreams", "routes"])
def test_section_not_a_table(section: str) -> None:
    data = one_route()
    data[section] = ["not", "a", "table"]
    errs = errors_of(data)
    assert f"{section}: must be a table" in errs


def test_upstream_and_route_not_tables() -> None:
    data = cfg({"r": 1, "ok": {"tiers": [{"a": 1}]}}, {**ups("a"), "z": "text"})
    assert errors_of(data) == ["upstreams.z: must be a table", "routes.r: must be a table"]


def test_invalid_upstream_is_not_reported_as_unknown() -> None:
    # Upstream a is defined but broken: its own error says why; "unknown upstream" is false.
    raw = ups("a", "b", a={"base_url": "ftp://example.com"})
    errs = errors_of(cfg({"r": {"tiers": [{"a": 1, "b": 1}]}}, raw))
    assert errs == ["upstreams.a.base_url: must be an http:// or https:// URL with a host"]


def test_route_timeout_override_is_validated() -> None:
    errs = errors_of(cfg({"r": {"tiers": [{"a": 1}], "ttfb_timeout_s": -1}}))
    assert errs == ["routes.r.ttfb_timeout_s: must be a number >= 0.001"]


def test_route_timeout_override_error_reported_once_per_route() -> None:
    # Several members share the one override: one problem, one line.
    errs = errors_of(cfg({"r": {"tiers": [{"a": 1, "b": 1}, {"c": 1}], "idle_timeout_s": 0}}))
    assert errs == ["routes.r.idle_timeout_s: must be a number >= 0.001"]


def test_route_timeout_override_validated_without_own_tiers() -> None:
    routes = {"r": {"fallback": ["s"], "ttfb_timeout_s": -1}, "s": {"tiers": [{"a": 1}]}}
    assert errors_of(cfg(routes)) == ["routes.r.ttfb_timeout_s: must be a number >= 0.001"]


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("defaults", "ttfb_timeout_s", math.nan),
        ("defaults", "connect_timeout_s", math.nan),
        ("defaults.ejection", "base_s", math.nan),
        ("server", "max_body_mb", math.inf),
        ("server", "max_body_mb", math.nan),
    ],
)
def test_non_finite_numbers_are_config_errors(section: str, key: str, value: float) -> None:
    data = one_route()
    node: dict[str, Any] = data
    for part in section.split("."):
        node = node.setdefault(part, {})
    node[key] = value
    errs = errors_of(data)
    assert len(errs) == 1
    assert errs[0].startswith(f"{section}.{key}: ")


def test_log_level_of_wrong_type_is_a_config_error() -> None:
    errs = errors_of(cfg({"r": {"tiers": [{"a": 1}]}}, server={"log_level": ["info"]}))
    assert errs == ["server.log_level: must be one of debug, error, info, warning"]


def test_malformed_ipv6_base_url_is_a_config_error() -> None:
    raw = ups("a", "b", a={"base_url": "http://[::1/v1"})
    errs = errors_of(cfg({"r": {"tiers": [{"b": 1}]}}, raw))
    assert len(errs) == 1
    assert errs[0].startswith("upstreams.a.base_url: must ")


# --- fallback --------------------------------------------------------------------------------


def test_unknown_fallback_route() -> None:
    errs = errors_of(
        cfg({"r": {"tiers": [{"a": 1}], "fallback": ["s", "ghost"]}, "s": {"tiers": [{"b": 1}]}})
    )
    assert errs == ['routes.r.fallback[1]: unknown route "ghost"']


@pytest.mark.parametrize("fallback", ["s", [1], [["s"]], {"s": 1}])
def test_fallback_not_a_list_of_names(fallback: object) -> None:
    errs = errors_of(
        cfg({"r": {"tiers": [{"a": 1}], "fallback": fallback}, "s": {"tiers": [{"b": 1}]}})
    )
    assert errs == ["routes.r.fallback: must be a list of route names"]


def test_fallback_two_cycle_is_rejected() -> None:
    routes = {
        "a": {"tiers": [{"a": 1}], "fallback": ["b"]},
        "b": {"tiers": [{"b": 1}], "fallback": ["a"]},
    }
    errs = errors_of(cfg(routes))
    assert "routes.a.fallback: cycle a -> b -> a" in errs
    assert "routes.b.fallback: cycle b -> a -> b" in errs
    assert all("cycle" in e for e in errs)


def test_fallback_self_cycle_is_rejected() -> None:
    errs = errors_of(cfg({"a": {"tiers": [{"a": 1}], "fallback": ["a"]}}))
    assert errs == ["routes.a.fallback: cycle a -> a"]


def test_fallback_into_a_cycle_is_rejected() -> None:
    routes = {
        "entry": {"tiers": [{"c": 1}], "fallback": ["a"]},
        "a": {"tiers": [{"a": 1}], "fallback": ["b"]},
        "b": {"tiers": [{"b": 1}], "fallback": ["a"]},
    }
    errs = errors_of(cfg(routes))
    assert "routes.entry.fallback: cycle entry -> a -> b -> a" in errs


def test_fallback_flattening_order_and_dedup() -> None:
    routes = {
        "top": {"tiers": [{"a": 1}], "fallback": ["left", "right"]},
        "left": {"tiers": [{"b": 1}], "fallback": ["shared"]},
        "right": {"tiers": [{"c": 1}, {"a": 2}], "fallback": ["shared"]},
        "shared": {"tiers": [{"d": 1}]},
    }
    config = compile_data(cfg(routes), {})
    top = config.routes["top"]
    assert [t.key for t in top.tiers] == [
        "top#0",
        "left#0",
        "shared#0",
        "right#0",
        "right#1",
    ]
    assert [t.key for t in config.routes["left"].tiers] == ["left#0", "shared#0"]
    assert [t.key for t in config.routes["right"].tiers] == ["right#0", "right#1", "shared#0"]
    assert top.fallback == ("left", "right")


def test_fallback_only_route() -> None:
    routes = {"alias": {"fallback": ["real"]}, "real": {"tiers": [{"a": 1}]}}
    config = compile_data(cfg(routes), {})
    assert [t.key for t in config.routes["alias"].tiers] == ["real#0"]


def test_duplicate_fallback_tiers_listed_once() -> None:
    routes = {"r": {"tiers": [{"a": 1}], "fallback": ["s", "s"]}, "s": {"tiers": [{"b": 1}]}}
    config = compile_data(cfg(routes), {})
    assert [t.key for t in config.routes["r"].tiers] == ["r#0", "s#0"]


# --- TOML text -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["[server\nlisten = 1", 'a = "unterminated', "[routes]\nx = = 1", "a = 1\na = 2"],
)
def test_toml_syntax_error_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        compile_text(text, env={})
    assert len(info.value.errors) == 1
    assert info.value.errors[0].startswith("TOML syntax: ")


def test_empty_text_needs_a_route() -> None:
    with pytest.raises(ConfigError) as info:
        compile_text("", env={})
    assert info.value.errors == ("routes: at least one route is required",)


# --- property: only ConfigError, whatever the input --------------------------------------------

KEYS = [
    "server",
    "defaults",
    "upstreams",
    "routes",
    "listen",
    "max_body_mb",
    "drain_timeout_s",
    "workers",
    "access_log",
    "log_level",
    "watch",
    "connect_timeout_s",
    "ttfb_timeout_s",
    "idle_timeout_s",
    "total_timeout_s",
    "max_attempts",
    "ejection",
    "panic",
    "provider",
    "base_url",
    "credential",
    "model",
    "strategy",
    "tiers",
    "fallback",
    "consecutive_failures",
    "base_s",
    "max_s",
    "jitter",
    "a",
    "b",
    "r",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(
        ["auto", "env:K", "env:", "http://127.0.0.1:1/v1", "http://[::1", "a:²", "weighted", "a"]
    )
    | st.text(max_size=8)
)
keys = st.sampled_from(KEYS) | st.text(max_size=6)
trees = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=5),
    max_leaves=25,
)


def _valid_base() -> dict[str, Any]:
    return {
        "server": {"listen": "127.0.0.1:8080"},
        "defaults": {"ejection": {"base_s": 1}},
        "upstreams": ups("a", "b"),
        "routes": {"r": {"tiers": [{"a": 1}, {"b": 2}], "fallback": []}},
    }


_PATHS = [
    ("server", "listen"),
    ("server", "workers"),
    ("server", "log_level"),
    ("server", "max_body_mb"),
    ("defaults", "ttfb_timeout_s"),
    ("defaults", "ejection"),
    ("upstreams", "a"),
    ("upstreams", "b"),
    ("routes", "r"),
    ("routes", "s"),
]


def _check_only_config_error(data: Any) -> None:
    try:
        config = compile_data(data, {"K": "secret-value"})
    except ConfigError as exc:
        assert exc.errors
        assert all(": " in e for e in exc.errors)
        assert "secret-value" not in str(exc)
    else:
        assert isinstance(config, Config)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(keys, trees, max_size=5))
@example({"server": {"log_level": {}}, "routes": {}})
def test_compile_data_on_arbitrary_trees_raises_only_config_error(data: dict[str, Any]) -> None:
    _check_only_config_error(data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_PATHS), trees)
@example(("server", "listen"), "a:²")
@example(("server", "log_level"), ["info"])
@example(("server", "max_body_mb"), math.inf)
@example(("upstreams", "a"), {"base_url": "http://[::1"})
def test_compile_data_with_one_arbitrary_value_raises_only_config_error(
    where: tuple[str, str], value: Any
) -> None:
    data = _valid_base()
    data[where[0]][where[1]] = value
    _check_only_config_error(data)


def test_base_url_query_is_kept_apart_and_part_of_the_identity() -> None:
    raw = ups("a", "b", a={"base_url": "https://gw.example.com/v1/?api-version=2024-10-21"})
    config = compile_data(cfg({"r": {"tiers": [{"a": 1}]}}, raw), {})
    a = config.upstreams["a"]
    assert (a.base_url, a.query) == ("https://gw.example.com/v1", "api-version=2024-10-21")
    raw2 = ups("a", "b", a={"base_url": "https://gw.example.com/v1/?api-version=2025-01-01"})
    a2 = compile_data(cfg({"r": {"tiers": [{"a": 1}]}}, raw2), {}).upstreams["a"]
    assert a2.fingerprint != a.fingerprint  # another API version: stats start fresh
