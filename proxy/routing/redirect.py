"""Where a request really goes: a route's context rules and A/B split, decided from peeked facts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from proxy.config.rules import Condition, Split
from proxy.config.values import Route
from proxy.routing.ring import key_hash
from proxy.routing.sticky import KeyValues

MAX_HOPS = 8
"""Rules and splits are loop-free (checked at load); this only bounds a chain of them."""
_IMAGE_MARKS = (b'"image_url"', b'"input_image"', b'"type":"image"', b'"type": "image"')
"""An image part in OpenAI (`image_url`, Responses `input_image`) or Messages (`image`) bodies;
a substring search, no parse (a prompt quoting one of these is counted as an image)."""


@dataclass(slots=True)
class Facts:
    """What rules read from one request; images are looked for only when a rule asks."""

    tokens: int
    tools: bool
    stream: bool
    team: str | None
    headers: Mapping[str, str]
    body: bytes
    _images: bool | None = None

    @property
    def images(self) -> bool:
        if self._images is None:
            self._images = any(mark in self.body for mark in _IMAGE_MARKS)
        return self._images


def holds(cond: Condition, facts: Facts) -> bool:
    if cond.min_tokens is not None and facts.tokens < cond.min_tokens:
        return False
    if cond.max_tokens is not None and facts.tokens > cond.max_tokens:
        return False
    if cond.tools is not None and facts.tools is not cond.tools:
        return False
    if cond.stream is not None and facts.stream is not cond.stream:
        return False
    if cond.team is not None and facts.team != cond.team:
        return False
    if any(facts.headers.get(name) != value for name, value in cond.headers):
        return False
    return cond.images is None or facts.images is cond.images


def arm_of(split: Split, key: bytes) -> str:
    """The arm a key falls in: a stable hash mapped onto the arms' cumulative weights."""
    point = key_hash(b"split\x00" + key) % split.total
    for name, weight in split.arms:
        if point < weight:
            return name
        point -= weight
    return split.arms[-1][0]  # unreachable: weights sum to total


@dataclass(frozen=True, slots=True)
class Redirect:
    """The route a request lands on, and the split arm it fell in (None: no split passed)."""

    route: Route
    arm: str | None


def resolve(
    route: Route,
    routes: Mapping[str, Route],
    facts: Facts,
    keys: KeyValues,
    fallback_key: bytes,
) -> Redirect:
    """Follow rules (first match) and splits until a route with neither sends the request.
    `fallback_key` (the request id) places a request that carries no split key at random."""
    arm = None
    for _ in range(MAX_HOPS):
        target = None
        for rule in route.rules:
            if holds(rule.when, facts):
                target = rule.then
                break
        if target is None and route.split is not None:
            key = keys.value(route.split.key) or fallback_key
            target = arm = arm_of(route.split, key)
        if target is None:
            break
        route = routes[target]
        if not route.redirects:
            break
    return Redirect(route, arm)
