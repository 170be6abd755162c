"""Tool-call ids rewritten for servers that accept only 9 letters and digits (Mistral)."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson

_OK = re.compile(r"[a-zA-Z0-9]{9}")
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def short_id(tool_id: str) -> str:
    """The same 9-character id for the same input, every request (calls and results match)."""
    if _OK.fullmatch(tool_id):
        return tool_id
    n = int.from_bytes(hashlib.sha256(tool_id.encode()).digest()[:8], "big")
    out = []
    for _ in range(9):
        n, r = divmod(n, 62)
        out.append(_ALPHABET[r])
    return "".join(out)


def shorten_tool_ids(body: bytes) -> bytes:
    """A chat body whose `tool_calls[].id` and `tool_call_id` fit; unchanged bytes when they do
    already (or when there are none: a byte search, no parse)."""
    if b'"tool_call' not in body:
        return body
    req = orjson.loads(body)
    changed = False
    for msg in req.get("messages") or ():
        if not isinstance(msg, dict):
            continue
        for call in msg.get("tool_calls") or ():
            changed |= _fix(call, "id")
        changed |= _fix(msg, "tool_call_id")
    return orjson.dumps(req) if changed else body


def _fix(obj: Any, key: str) -> bool:
    value = obj.get(key) if isinstance(obj, dict) else None
    if isinstance(value, str) and not _OK.fullmatch(value):
        obj[key] = short_id(value)
        return True
    return False
