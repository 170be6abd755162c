"""Tests for proxy.config.reader and .schema: dataclass fields read from TOML tables."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import pytest

from proxy.config.reader import Reader, keys_of
from proxy.config.schema import custom, setting
from proxy.config.values import Defaults, Ejection, Server, Timeouts, Upstream


class Colour(StrEnum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    """A section with one field of every kind the reader knows."""

    name: str
    count: int = setting(2, lo=1)
    ratio: float = setting(0.5, "ratio_pct", lo=0.0)
    cap: float | None = setting(None, lo=0.001)
    size_bytes: int = setting(2048, "size_kb", lo=0.001, unit=1024)
    on: bool = setting(True)
    label: str | None = setting(None)
    level: str = setting("low", choices=("high", "low"))
    colour: Colour = setting(Colour.RED)
    listen: str = custom("x", "address")


def read(raw: dict[str, object], base: Sample | None = None) -> tuple[Sample, list[str]]:
    r = Reader()
    r.known(raw, keys_of(Sample), "s")
    return r.read(Sample, raw, "s", base, name="n"), r.errors


def test_absent_keys_take_the_field_defaults() -> None:
    sample, errors = read({})
    assert errors == []
    assert sample == Sample(name="n")


def test_every_kind_is_read_and_converted() -> None:
    raw: dict[str, object] = {
        "count": 5,
        "ratio_pct": 1,
        "cap": 2.5,
        "size_kb": 1.5,
        "on": False,
        "label": "x",
        "level": "high",
        "colour": "blue",
    }
    sample, errors = read(raw)
    assert errors == []
    assert sample == Sample(
        name="n",
        count=5,
        ratio=1.0,
        cap=2.5,
        size_bytes=1536,
        on=False,
        label="x",
        level="high",
        colour=Colour.BLUE,
    )
    assert type(sample.ratio) is float
    assert type(sample.size_bytes) is int


def test_absent_keys_inherit_from_a_base() -> None:
    base, _ = read({"count": 9, "colour": "blue"})
    sample, errors = read({"on": False}, base)
    assert errors == []
    assert (sample.count, sample.colour, sample.on) == (9, Colour.BLUE, False)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("count", 0, "must be an integer >= 1"),
        ("count", True, "must be an integer >= 1"),
        ("count", 1.5, "must be an integer >= 1"),
        ("ratio_pct", -1, "must be a number >= 0"),
        ("ratio_pct", "1", "must be a number >= 0"),
        ("cap", float("inf"), "must be a number >= 0.001"),
        ("on", "yes", "must be true or false"),
        ("label", "", "must be a non-empty string"),
        ("level", "mid", "must be one of high, low"),
        ("colour", "green", "must be one of red, blue"),
    ],
)
def test_wrong_values_are_reported_with_their_path_and_fall_back(
    key: str, value: object, message: str
) -> None:
    base, _ = read({"count": 4, "ratio_pct": 0.25})
    sample, errors = read({key: value}, base)
    assert errors == [f"s.{key}: {message}"]
    # The fallback is the base's value, so nothing that inherits it errs a second time.
    assert getattr(sample, {"ratio_pct": "ratio"}.get(key, key)) == getattr(
        base, {"ratio_pct": "ratio"}.get(key, key)
    )


def test_unknown_keys_are_errors_and_custom_keys_are_known() -> None:
    _, errors = read({"address": "y", "colour_x": 1, "zzz": 2})
    assert errors == [
        's.colour_x: unknown setting; did you mean "colour"?',
        "s.zzz: unknown setting",
    ]


def test_present_reads_only_what_the_table_sets() -> None:
    r = Reader()
    assert r.present(Timeouts, {"idle_timeout_s": 3}, "routes.r") == {"idle_s": 3.0}
    assert r.errors == []


def test_the_shipped_sections_state_their_toml_keys() -> None:
    assert keys_of(Timeouts) == {
        "connect_timeout_s",
        "ttfb_timeout_s",
        "idle_timeout_s",
        "total_timeout_s",
    }
    assert keys_of(Ejection) == {"consecutive_failures", "base_s", "max_s", "jitter"}
    assert keys_of(Defaults) == {
        "max_attempts",
        "panic",
        "max_rate_limit_pause_s",
        "reserve_max_tokens",
    }
    assert keys_of(Server) == {
        "listen",
        "max_body_mb",
        "max_response_mb",
        "max_inflight_body_mb",
        "reload_settle_ms",
        "drain_timeout_s",
        "workers",
        "access_log",
        "log_level",
        "watch",
        "readyz_detail",
        "keys_file",
        "require_keys",
        "ledger",
        "budget_webhook",
        "header_timeout_s",
        "body_timeout_s",
        "keepalive_timeout_s",
        "max_connections",
        "max_requests",
        "max_headers",
        "explain",
    }
    assert keys_of(Upstream) == {
        "provider",
        "base_url",
        "model",
        "credential",
        "stream_usage",
        "price",
        "rpm",
        "tpm",
        "anthropic_version",
        "short_tool_ids",
        "responses",
        "deployment",
        "api_version",
        "region",
        "access_key_id",
        "session_token",
        "max_inflight",
        "health",
    }


def test_mutable_defaults_are_refused() -> None:
    with pytest.raises(TypeError):
        setting([])


def test_hardening_settings_read_in_their_units() -> None:
    from proxy.config.compiler import compile_data

    base = {
        "upstreams": {"a": {"base_url": "http://127.0.0.1:1/v1"}},
        "routes": {"r": {"tiers": [{"a": 1}]}},
    }
    default = compile_data(base, {}).server
    assert default.reload_settle_s == 0.3
    assert default.max_inflight_body_bytes == 256 * 2**20
    server = {"reload_settle_ms": 1500, "max_inflight_body_mb": 8}
    tuned = compile_data({**base, "server": server}, {}).server
    assert tuned.reload_settle_s == 1.5
    assert tuned.max_inflight_body_bytes == 8 * 2**20
