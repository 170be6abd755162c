"""Where a per-request key comes from (`header:NAME`, `user`, `key`): sticky routing, splits."""

from __future__ import annotations

from dataclasses import dataclass

from proxy.config.reader import Reader

KINDS = ("header", "user", "key")


@dataclass(frozen=True, slots=True)
class KeySource:
    """`header:NAME` (a request header), `user` (the body's `user` field) or `key` (the virtual
    key's name)."""

    kind: str
    header: str = ""
    """The lower-case header name, for kind "header"."""


def read_key_source(
    c: Reader, raw: object, path: str, allowed: tuple[str, ...]
) -> KeySource | None:
    """Parse one key source; an error names the TOML path and the accepted spellings."""
    spelled = " | ".join('"header:NAME"' if k == "header" else f'"{k}"' for k in allowed)
    if not isinstance(raw, str):
        c.err(path, f"must be {spelled}")
        return None
    if raw.startswith("header:") and "header" in allowed:
        name = raw[len("header:") :].strip().lower()
        if not name or any(ch in name for ch in " :\t"):
            c.err(path, "needs a header name after header:")
            return None
        return KeySource("header", name)
    if raw in allowed and raw != "header":
        return KeySource(raw)
    c.err(path, f'unknown key source "{raw}" ({spelled})')
    return None
