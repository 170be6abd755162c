"""Find the values of a JSON object's top-level keys by scanning bytes, without building them."""

from __future__ import annotations

import re

import orjson

_AT_TOP = re.compile(rb'[",:{}\[\]]')
"""Inside the top-level object: strings, separators and containers matter."""
_NESTED = re.compile(rb'["{}\[\]]')
"""Deeper: only strings and brackets, so long arrays of numbers are skipped at C speed."""
_SPACE = b" \t\r\n"


class ScanError(ValueError):
    """The bytes are not a JSON object as far as the scan can tell."""


def _string_end(body: bytes, start: int) -> int:
    """Index just past the string whose opening quote is at `start`."""
    i = start + 1
    while True:
        j = body.find(b'"', i)
        if j < 0:
            raise ScanError("unterminated string")
        k = j - 1
        while body[k] == 92:  # a quote preceded by an odd number of backslashes is escaped
            k -= 1
        if (j - 1 - k) % 2 == 0:
            return j + 1
        i = j + 1


def top_level_values(
    body: bytes, wanted: frozenset[bytes], repeated: set[bytes] | None = None
) -> dict[bytes, tuple[int, int]]:
    """Spans `(start, end)` of the raw values of the `wanted` top-level keys (last one wins,
    as in a full parse), keys compared as a parser would decode them; `repeated` collects the
    wanted keys the object holds more than once.

    The cost is proportional to the number of strings and brackets, not to the bytes: a large
    string (a base64 image) is skipped with one `find`.
    """
    start, end = _object_bounds(body)
    found: dict[bytes, tuple[int, int]] = {}
    pos = start + 1
    key: bytes | None = None
    value_at = -1
    while True:
        m = _AT_TOP.search(body, pos)
        if m is None:
            raise ScanError("unbalanced object")
        at = m.start()
        ch = body[at]
        pos = at + 1
        if ch == 34:  # '"': the first string of a member is its key
            pos = _string_end(body, at)
            if key is None:
                key = _key(body[at + 1 : pos - 1])
        elif ch == 58:  # ":"
            value_at = pos
        elif ch in (123, 91):  # "{" or "[": a nested value, skipped whole
            pos = _skip_nested(body, pos)
        elif ch == 93:  # "]"
            raise ScanError("unbalanced object")
        else:  # "," or "}": the member ends here
            if key is not None and value_at >= 0 and key in wanted:
                if repeated is not None and key in found:
                    repeated.add(key)
                found[key] = (value_at, at)
            key, value_at = None, -1
            if ch == 125:
                if at != end - 1:
                    raise ScanError("data after the object")
                return found


def _object_bounds(body: bytes) -> tuple[int, int]:
    """Where the object's "{" is and just past its "}", whitespace around them ignored."""
    start, end = 0, len(body)
    while start < end and body[start] in _SPACE:
        start += 1
    while end > start and body[end - 1] in _SPACE:
        end -= 1
    if end - start < 2 or body[start] != 123 or body[end - 1] != 125:  # "{" ... "}"
        raise ScanError("not an object")
    return start, end


def _skip_nested(body: bytes, pos: int) -> int:
    """Index just past the container opened right before `pos`."""
    depth = 1
    while depth:
        m = _NESTED.search(body, pos)
        if m is None:
            raise ScanError("unbalanced object")
        at = m.start()
        ch = body[at]
        if ch == 34:
            pos = _string_end(body, at)
            continue
        pos = at + 1
        depth += 1 if ch in (123, 91) else -1
    return pos


def _key(raw: bytes) -> bytes:
    if b"\\" not in raw:
        return bytes(raw)
    try:  # spelled with escapes ("mod\\u0065l"): compare it as a parser decodes it
        text = orjson.loads(b'"' + raw + b'"')
    except orjson.JSONDecodeError:
        raise ScanError("bad escape in a key") from None
    return str(text).encode()
