"""Response ids of the Responses API: the one a request continues, the one an answer creates."""

from __future__ import annotations

import re

import orjson

_FIELD = b'"previous_response_id"'
_ID = re.compile(rb'"id"\s*:\s*"([^"\\]{1,200})"')
_HEAD = 8192


def previous_response_id(body: bytes) -> str | None:
    """The `previous_response_id` a request continues from; None without one (no parse then)."""
    if _FIELD not in body:
        return None
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    found = obj.get("previous_response_id") if isinstance(obj, dict) else None
    return found if isinstance(found, str) and found else None


def created_id(first: bytes) -> str | None:
    """The id of the response an answer creates: the first `"id"` of a whole answer (its
    top-level id) or of a stream's first event (`response.created` carries the response)."""
    m = _ID.search(first, 0, _HEAD)
    return m.group(1).decode() if m else None
