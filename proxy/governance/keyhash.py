"""Virtual key secrets: make one, hash it with the file's salt, find it in request headers."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping

PREFIX = "sk-gw-"
"""Recognisable in leaked-secret scanners and by the log scrubber."""


def new_key() -> str:
    """A fresh secret: 256 random bits, URL-safe."""
    return PREFIX + secrets.token_urlsafe(32)


def new_salt() -> str:
    return secrets.token_hex(16)


def hash_key(salt: bytes, key: str) -> str:
    """SHA-256 of salt + key, hex. Keys carry 256 random bits, so one hash per lookup is enough
    (a slow KDF would cost CPU on every request and guards nothing more for random secrets)."""
    return hashlib.sha256(salt + key.encode("utf-8", "surrogatepass")).hexdigest()


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a client sent: `Authorization: Bearer` (OpenAI SDK) or `x-api-key` (Anthropic)."""
    auth = headers.get("authorization")
    if auth is not None:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    key = headers.get("x-api-key")
    if key is not None and key.strip():
        return key.strip()
    return None
