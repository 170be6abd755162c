"""Prompt-cache affinity decisions: a conversation's key, and the pin table that remembers where
its provider-side prompt cache lives (pure: the clock is passed in)."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.providers.cache_hygiene import asks_long_ttl

MAX_PINS = 100_000
"""Pins kept at most per process (least recently used dropped first): about 200 bytes each."""


def affinity_key(headers: Mapping[str, str], body: bytes, header: str) -> tuple[str, bool] | None:
    """(key, asks for a 1 h cache) of one request; None when the body is not a JSON object.

    The key is the session header's value when the client sends one, else a hash of the stable
    head of the cacheable prefix: system, tools and the first message. Every later turn of the
    same conversation repeats that head, while the breakpoints agents set on their latest
    messages move forward each turn, so a hash up to a breakpoint would change every time.
    Values are hashed: no prompt text or session id is kept.
    """
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    long = asks_long_ttl(obj)
    session = headers.get(header)
    if session:
        return "s:" + _digest(session.encode()), long
    head: list[Any] = [obj.get("system"), obj.get("tools"), obj.get("instructions")]
    messages = obj.get("messages") or obj.get("input")
    if isinstance(messages, list):
        head.append(messages[:1])
    elif isinstance(messages, str):
        head.append(messages)
    return "p:" + _digest(orjson.dumps(head, option=orjson.OPT_SORT_KEYS)), long


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class Pin:
    """Where one conversation's prompt cache lives, until when."""

    upstream: str
    expires_at: float


class PinTable:
    """Pins by affinity key in this process, with a TTL and a size bound."""

    __slots__ = ("_pins", "limit")

    def __init__(self, limit: int = MAX_PINS) -> None:
        self._pins: OrderedDict[str, Pin] = OrderedDict()
        self.limit = limit

    def __len__(self) -> int:
        return len(self._pins)

    def get(self, key: str, now: float) -> Pin | None:
        pin = self._pins.get(key)
        if pin is None:
            return None
        if pin.expires_at <= now:
            del self._pins[key]
            return None
        self._pins.move_to_end(key)
        return pin

    def put(self, key: str, upstream: str, ttl_s: float, now: float) -> None:
        self._pins[key] = Pin(upstream, now + ttl_s)
        self._pins.move_to_end(key)
        while len(self._pins) > self.limit:
            self._pins.popitem(last=False)

    def drop(self, key: str) -> None:
        self._pins.pop(key, None)


def settle_pin(
    pin: Pin | None, answered_by: str | None, cache_read: bool, now: float, ttl_s: float
) -> tuple[str, float] | None:
    """What to store once a request ended: (upstream, ttl) or None to leave the pin as is.

    A new conversation is pinned where it was answered; a pin is refreshed (its full TTL
    again) when the answer reports cache-read tokens, and moved when another upstream answered
    (the pinned one failed: the caller logs why).
    """
    if answered_by is None:
        return None
    if pin is None or pin.upstream != answered_by or cache_read:
        return answered_by, ttl_s
    return None
