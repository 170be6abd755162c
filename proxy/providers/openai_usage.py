"""OpenAI usage: read from a JSON body or one SSE event, found in streams, cut out of them."""

from __future__ import annotations

import orjson

from proxy.core.exchange import Usage
from proxy.providers.sse import SSEParser

WHOLE_PARSE_BYTES = 16 * 1024
"""Below this size a whole-body parse (~3 us for a typical answer) beats locating the object."""
MAX_PARSED_BODY = 1 << 20
"""Bodies above this size are not parsed for usage (embeddings of big batches)."""


def _from_object(data: object) -> Usage | None:
    if not isinstance(data, dict):
        return None
    usage = data.get("usage")
    if not isinstance(usage, dict):
        return None
    tin = usage.get("prompt_tokens", usage.get("input_tokens"))
    tout = usage.get("completion_tokens", usage.get("output_tokens", 0))
    if not isinstance(tin, int) or not isinstance(tout, int) or isinstance(tin | tout, bool):
        return None
    if isinstance(tin, bool) or isinstance(tout, bool) or tin < 0 or tout < 0:
        return None
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    if not isinstance(cached, int) or isinstance(cached, bool) or cached < 0:
        cached = 0
    return Usage(tokens_in=tin, tokens_out=tout, tokens_cached=cached)


def from_body(body: bytes) -> Usage | None:
    """Usage of a non-streaming response, if it reports one.

    Small answers are parsed whole; in large ones only the `"usage": {...}` object is cut out
    and parsed (it holds no strings with braces), so a long completion costs no more.
    """
    at = body.rfind(b'"usage"')
    if at < 0:
        return None
    if len(body) <= WHOLE_PARSE_BYTES:
        return _from_whole(body)
    start = body.find(b"{", at)
    end = _matching_brace(body, start) if start >= 0 else -1
    if end < 0 or body[at + 7 : start].strip(b" \t\r\n:"):
        return _from_whole(body)
    try:
        return _from_object({"usage": orjson.loads(body[start : end + 1])})
    except orjson.JSONDecodeError:
        return _from_whole(body)


def _matching_brace(body: bytes, start: int) -> int:
    depth = 0
    i = start
    while True:
        open_at = body.find(b"{", i)
        close_at = body.find(b"}", i)
        if close_at < 0:
            return -1
        if 0 <= open_at < close_at:
            depth += 1
            i = open_at + 1
        else:
            depth -= 1
            if depth == 0:
                return close_at
            i = close_at + 1


def _from_whole(body: bytes) -> Usage | None:
    if len(body) > MAX_PARSED_BODY:
        return None
    try:
        return _from_object(orjson.loads(body))
    except orjson.JSONDecodeError:
        return None


def from_event(data: bytes) -> Usage | None:
    """Usage carried by one SSE data payload (the include_usage chunk), if any."""
    if b'"usage"' not in data or b'"usage":null' in data:
        return None
    try:
        return _from_object(orjson.loads(data))
    except orjson.JSONDecodeError:
        return None


_KEYS = (b'"usage":{', b'"usage": {')
_MAX_TAIL = 1 << 16


class UsageTap:
    """Finds the usage event of a stream without parsing the others.

    Relaying is per chunk and most chunks carry no usage, so each is only searched for the
    key; from the start of the event holding it, the SSE parser takes over until that event
    is complete (it may be split across chunks). A chunk split inside the key itself goes
    unseen: upstreams write whole events.
    """

    __slots__ = ("_parser", "_tail", "usage")

    def __init__(self) -> None:
        self._parser: SSEParser | None = None
        self._tail = b""
        """The unfinished last line of the previous chunk (usually empty)."""
        self.usage: Usage | None = None

    def waits_for(self, chunk: bytes) -> bool:
        """Whether `chunk`, a run of whole events, needs `feed`: it holds a usage key, or an
        event with one is under way. Saves the stripper a second search of every chunk."""
        return self._parser is not None or _KEYS[0] in chunk or _KEYS[1] in chunk

    def feed(self, chunk: bytes) -> None:
        if self._parser is None:
            at = chunk.find(_KEYS[0])
            if at < 0:
                at = chunk.find(_KEYS[1])
            if at < 0:
                nl = chunk.rfind(b"\n")
                self._tail = chunk[nl + 1 :] if nl >= 0 else (self._tail + chunk)[-_MAX_TAIL:]
                return
            start = chunk.rfind(b"data:", 0, at)
            while start > 0 and chunk[start - 1] not in b"\r\n":
                start = chunk.rfind(b"data:", 0, start)
            self._parser = SSEParser()
            chunk = chunk[start:] if start >= 0 else self._tail + chunk
            self._tail = b""
        events = self._parser.feed(chunk)
        if events:
            self._parser = None
        for ev in events:
            usage = from_event(ev.data)
            if usage is not None:
                self.usage = usage


def drop_usage_events(whole: bytes) -> bytes:
    """Remove the usage-only events (`"choices": []` with a usage object) from whole events."""
    search = 0
    while True:
        at = whole.find(b'"usage":{', search)
        if at < 0:
            at = whole.find(b'"usage": {', search)
            if at < 0:
                return whole
        start = whole.rfind(b"\n\n", 0, at) + 2  # 0 when it is the first event
        start = 0 if start < 2 else start
        end = whole.find(b"\n\n", at) + 2
        event = whole[start:end]
        if b'"choices":[]' in event or b'"choices": []' in event:
            whole = whole[:start] + whole[end:]
            search = start
        else:
            search = end
