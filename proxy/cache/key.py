"""The cache key of a request: route, scope and the normalised body (key order, spacing ignored)."""

from __future__ import annotations

import hashlib

import orjson

IGNORED = frozenset({"stream", "stream_options", "user", "metadata", "store"})
"""Body fields that do not change the answer: a stream and a whole body share one entry (the
replay converts), and who asked is the scope's business, not the key's."""


def cache_key(route: str, scope: str, body: bytes) -> str | None:
    """SHA-256 over route, scope and the body re-encoded with sorted keys; None when the body is
    not a JSON object (nothing to cache). `scope` is the team (or the key without a team), so
    answers are never shared across teams."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    for name in IGNORED & data.keys():
        del data[name]
    canon = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    h = hashlib.sha256()
    for part in (route.encode(), b"\0", scope.encode(), b"\0", canon):
        h.update(part)
    return h.hexdigest()
