"""Usage of a Responses API stream, read from its terminal event while the bytes pass through."""

from __future__ import annotations

import orjson

from proxy.core.exchange import Usage
from proxy.providers.sse import SSEParser

_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
"""Every Responses stream event names its type on an `event:` line; only these carry usage."""


class ResponsesUsageObserver:
    """A `StreamFilter` that passes every byte unchanged; usage is in `response.completed`
    (or `.incomplete` / `.failed`) under `response.usage`. Only those events are decoded."""

    __slots__ = ("_parser", "usage")

    def __init__(self) -> None:
        self._parser = SSEParser()
        self.usage: Usage | None = None

    def chunk(self, data: bytes) -> bytes:
        for ev in self._parser.feed(data):
            if ev.event in _TERMINAL:
                self._read(ev.data)
        return data

    def end(self) -> bytes:
        return b""

    def _read(self, data: bytes) -> None:
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        response = obj.get("response") if isinstance(obj, dict) else None
        usage = response.get("usage") if isinstance(response, dict) else None
        if not isinstance(usage, dict):
            return
        tin, tout = usage.get("input_tokens"), usage.get("output_tokens")
        if isinstance(tin, int) and isinstance(tout, int):
            details = usage.get("input_tokens_details")
            cached = details.get("cached_tokens") if isinstance(details, dict) else 0
            self.usage = Usage(tin, tout, cached if isinstance(cached, int) and cached > 0 else 0)
