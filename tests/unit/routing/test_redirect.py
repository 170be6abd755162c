"""Tests for context rules and A/B splits: compile errors by TOML path, evaluation, arm shares."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.config.compiler import compile_data
from proxy.config.values import Config, ConfigError
from proxy.routing.redirect import Facts, arm_of, resolve
from proxy.routing.sticky import KeyValues

UPS = {n: {"base_url": f"http://127.0.0.1:{9001 + i}/v1"} for i, n in enumerate("ab")}


def compiled(routes: dict[str, Any]) -> Config:
    return compile_data({"upstreams": UPS, "routes": routes}, {})


def errors(routes: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as err:
        compiled(routes)
    return list(err.value.errors)


def facts(tokens: int = 10, **kw: Any) -> Facts:
    base: dict[str, Any] = {
        "tools": False,
        "stream": False,
        "team": None,
        "headers": {},
        "body": b"{}",
    }
    base.update(kw)
    return Facts(tokens=tokens, **base)


NOKEY = KeyValues({}, None, None)
RULED = {
    "chat": {
        "tiers": [{"a": 1}],
        "rules": [
            {"if": {"min_tokens": 1000}, "then": "long"},
            {"if": {"tools": True, "stream": False}, "then": "tools"},
            {"if": {"images": True}, "then": "vision"},
            {"if": {"header": {"X-Priority": "high"}}, "then": "long"},
            {"if": {"team": "research"}, "then": "tools"},
        ],
    },
    "long": {"tiers": [{"b": 1}]},
    "tools": {"tiers": [{"b": 1}]},
    "vision": {"tiers": [{"a": 1}], "rules": [{"if": {"max_tokens": 5}, "then": "tools"}]},
}


def landed(f: Facts) -> str:
    config = compiled(RULED)
    return resolve(config.routes["chat"], config.routes, f, NOKEY, b"rid").route.name


def test_rules_first_match_wins_and_no_match_stays() -> None:
    assert landed(facts()) == "chat"
    assert landed(facts(2000, tools=True)) == "long"
    assert landed(facts(tools=True)) == "tools"
    assert landed(facts(tools=True, stream=True)) == "chat"
    assert landed(facts(body=b'{"messages":[{"content":[{"type":"image_url"}]}]}')) == "vision"
    assert landed(facts(3, body=b'{"x":{"type": "image"}}')) == "tools"  # vision's own rule
    assert landed(facts(headers={"x-priority": "high"})) == "long"
    assert landed(facts(headers={"x-priority": "low"})) == "chat"
    assert landed(facts(team="research")) == "tools"


def test_route_without_rules_does_not_redirect() -> None:
    config = compiled(RULED)
    assert config.routes["chat"].redirects
    assert not config.routes["long"].redirects


def test_rule_errors_name_the_toml_path() -> None:
    errs = errors(
        {
            "chat": {
                "tiers": [{"a": 1}],
                "rules": [
                    {"if": {"min_tokens": 1}, "then": "nowhere"},
                    {"if": {"colour": 1}, "then": "chat2"},
                    {"if": {}, "then": "chat2"},
                    {"then": "chat2"},
                ],
            },
            "chat2": {"tiers": [{"a": 1}], "rules": [{"if": {"stream": True}, "then": "chat"}]},
        }
    )
    assert 'routes.chat.rules[0].then: unknown route "nowhere"' in errs
    assert any(e.startswith("routes.chat.rules[1].if.colour: unknown setting") for e in errs)
    assert "routes.chat.rules[2].if: must be a non-empty table of conditions" in errs
    assert any(e.startswith("routes.chat.rules[3].if:") for e in errs)


def test_rule_cycle_is_an_error() -> None:
    errs = errors(
        {
            "chat": {"tiers": [{"a": 1}], "rules": [{"if": {"stream": True}, "then": "b"}]},
            "b": {"tiers": [{"a": 1}], "rules": [{"if": {"tools": True}, "then": "chat"}]},
        }
    )
    assert any("loop: chat -> b -> chat" in e for e in errs), errs


SPLIT = {
    "chat": {"split": {"chat-a": 90, "chat-b": 10}, "split_key": "header:x-user"},
    "chat-a": {"tiers": [{"a": 1}]},
    "chat-b": {"tiers": [{"b": 1}]},
}


def test_split_is_sticky_and_follows_weights() -> None:
    config = compiled(SPLIT)
    chat = config.routes["chat"]
    arms: Counter[str | None] = Counter()
    for i in range(4000):
        kv = KeyValues({"x-user": f"u{i}"}, None, None)
        got = resolve(chat, config.routes, facts(), kv, b"rid")
        assert got.arm == got.route.name
        again = resolve(chat, config.routes, facts(), kv, f"other{i}".encode())
        assert again.arm == got.arm  # same key, same arm, whatever the request id
        arms[got.arm] += 1
    assert 0.87 < arms["chat-a"] / 4000 < 0.93


@given(st.binary(min_size=1, max_size=32))
def test_arm_of_is_a_pure_function_of_the_key(key: bytes) -> None:
    split = compiled(SPLIT).routes["chat"].split
    assert split is not None
    assert arm_of(split, key) == arm_of(split, key) in ("chat-a", "chat-b")


def test_split_without_key_uses_request_id() -> None:
    config = compiled(SPLIT)
    arms = {
        resolve(config.routes["chat"], config.routes, facts(), NOKEY, str(i).encode()).arm
        for i in range(200)
    }
    assert arms == {"chat-a", "chat-b"}


def test_split_errors() -> None:
    errs = errors(
        {
            "chat": {"split": {"x": 1}, "tiers": [{"a": 1}]},
            "s2": {"split": {"chat": 1, "nowhere": 1}},
            "s4": {"split": {"chat": 1, "s2": 1}, "split_key": "cookie"},
            "s3": {"split_key": "user", "tiers": [{"a": 1}]},
        }
    )
    assert any(e.startswith("routes.chat.split: must be a table of two or more") for e in errs)
    assert 'routes.s2.split.nowhere: unknown route "nowhere"' in errs
    assert any(e.startswith('routes.s4.split_key: unknown key source "cookie"') for e in errs)
    assert "routes.s3.split_key: applies only with split = {...}" in errs
