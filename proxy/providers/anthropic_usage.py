"""Usage seen in a Messages stream relayed byte for byte (Messages client, Anthropic upstream)."""

from __future__ import annotations

import orjson

from proxy.core.exchange import Usage
from proxy.providers.anthropic_answer import messages_usage
from proxy.providers.sse import SSEParser


class MessagesUsageObserver:
    """A `StreamFilter` that passes every byte unchanged and reads the usage events.

    Usage sits in `message_start` (input, cache) and `message_delta` (cumulative output); only
    events carrying a `"usage"` key are decoded.
    """

    __slots__ = ("_parser", "_usage")

    def __init__(self) -> None:
        self._parser = SSEParser()
        self._usage: dict[str, object] = {}

    @property
    def usage(self) -> Usage | None:
        return messages_usage(self._usage) if self._usage else None

    def chunk(self, data: bytes) -> bytes:
        for ev in self._parser.feed(data):
            if b'"usage"' in ev.data:
                self._read(ev.data)
        return data

    def end(self) -> bytes:
        return b""

    def _read(self, data: bytes) -> None:
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(obj, dict):
            return
        message = obj.get("message")
        usage = (message if isinstance(message, dict) else obj).get("usage")
        if isinstance(usage, dict):
            self._usage.update({k: v for k, v in usage.items() if v is not None})
