"""A route's context rules (`rules = [{ if = {...}, then = "route" }]`) and the A/B split."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from proxy.config.keysource import KeySource, read_key_source
from proxy.config.reader import Reader, keys_of
from proxy.config.schema import custom, setting


@dataclass(frozen=True, slots=True, kw_only=True)
class Condition:
    """What a request must show for a rule to apply; every field set must hold (AND)."""

    min_tokens: int | None = setting(None, lo=0)
    """Estimated prompt tokens at least this (body bytes / 4, as reservations count)."""
    max_tokens: int | None = setting(None, lo=0)
    """Estimated prompt tokens at most this."""
    tools: bool | None = setting(None)
    """The body has (true) or has not (false) a non-empty `tools` list."""
    images: bool | None = setting(None)
    """The body has (true) or has not (false) an image part."""
    stream: bool | None = setting(None)
    team: str | None = setting(None)
    """The virtual key's team."""
    headers: tuple[tuple[str, str], ...] = custom((), "header")
    """`header = { "x-priority" = "high" }`: each header has exactly that value."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """If the condition holds, the request goes to route `then` (whose own rules apply next)."""

    when: Condition
    then: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Split:
    """`split = { "chat-a" = 90, "chat-b" = 10 }`: arms (other routes) by weight, sticky per key."""

    arms: tuple[tuple[str, int], ...]
    total: int
    key: KeySource


CONDITION_KEYS = keys_of(Condition)


def read_rules(c: Reader, raw: object, path: str) -> tuple[Rule, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        c.err(path, 'must be a list like [{ if = { min_tokens = 8000 }, then = "long" }]')
        return ()
    rules: list[Rule] = []
    for i, item in enumerate(raw):
        p = f"{path}[{i}]"
        if not isinstance(item, Mapping):
            c.err(p, 'must be a table { if = {...}, then = "route" }')
            continue
        c.known(item, frozenset({"if", "then"}), p)
        then = c.string(item, "then", p)
        if then is None:
            c.err(f"{p}.then", "is required: the route the request goes to")
        cond = read_condition(c, item.get("if"), f"{p}.if")
        if then is not None and cond is not None:
            rules.append(Rule(when=cond, then=then))
    return tuple(rules)


def read_condition(c: Reader, raw: object, path: str) -> Condition | None:
    if not isinstance(raw, Mapping) or not raw:
        c.err(path, "must be a non-empty table of conditions")
        return None
    c.known(raw, CONDITION_KEYS, path)
    cond = c.read(Condition, raw, path)
    header = raw.get("header")
    if header is None:
        return cond
    if not isinstance(header, Mapping) or not header:
        c.err(f"{path}.header", 'must be a table { "header-name" = "value" }')
        return cond
    pairs: list[tuple[str, str]] = []
    for name, value in header.items():
        if not isinstance(value, str):
            c.err(f"{path}.header.{name}", "must be a string")
            continue
        pairs.append((name.lower(), value))
    return replace(cond, headers=tuple(pairs))


def read_split(c: Reader, raw: Mapping[str, object], path: str) -> Split | None:
    if "split" not in raw:
        if "split_key" in raw:
            c.err(f"{path}.split_key", "applies only with split = {...}")
        return None
    value = raw["split"]
    if not isinstance(value, Mapping) or len(value) < 2:
        c.err(f"{path}.split", 'must be a table of two or more routes { "a" = 90, "b" = 10 }')
        return None
    arms: list[tuple[str, int]] = []
    for name, weight in value.items():
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
            c.err(f"{path}.split.{name}", "weight must be an integer >= 0")
            continue
        arms.append((name, weight))
    total = sum(w for _, w in arms)
    if arms and total == 0:
        c.err(f"{path}.split", "needs at least one arm with weight > 0")
    key_raw = raw.get("split_key", "key")
    key = read_key_source(c, key_raw, f"{path}.split_key", ("header", "user", "key"))
    if key is None or len(arms) < len(value) or total == 0:
        return None
    return Split(arms=tuple(arms), total=total, key=key)
