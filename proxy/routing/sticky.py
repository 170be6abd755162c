"""The per-request value a key source names (a header, the body's `user`, the virtual key)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from proxy.config.keysource import KeySource

MAX_KEY_BYTES = 256
"""Longer values are hashed on their first 256 bytes (a session id is short; a huge header
must not cost a hash of kilobytes)."""


@dataclass(frozen=True, slots=True)
class KeyValues:
    """What a request offers to key sources; built only for routes that use one."""

    headers: Mapping[str, str]
    user: str | None
    key_name: str | None

    def value(self, source: KeySource) -> bytes | None:
        """The bytes to hash, or None when the request does not carry that key."""
        if source.kind == "header":
            text = self.headers.get(source.header)
        elif source.kind == "user":
            text = self.user
        else:
            text = self.key_name
        if not text:
            return None
        return text.encode()[:MAX_KEY_BYTES]
