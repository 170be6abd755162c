"""Credential scrubbing: every credential the gateway holds is replaced in upstream bytes."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import Protocol

from proxy.core.exchange import Usage

REDACTED = b"[redacted]"
MIN_SECRET_LEN = 4
"""Shorter values would match ordinary text; the log redactor uses the same floor."""


class Scrubber:
    """Replaces each credential (raw, and JSON-escaped where that differs) with `[redacted]`.

    The `Bearer ` form needs no pattern of its own: the credential inside it is replaced.
    Longest first, so a credential that contains another is replaced whole.
    """

    __slots__ = ("_firsts", "_needles", "_newline_safe", "_pattern", "_text_pattern")

    def __init__(self, secrets: Iterable[str]) -> None:
        needles: set[bytes] = set()
        for secret in secrets:
            if len(secret) < MIN_SECRET_LEN:
                continue
            raw = secret.encode()
            needles.add(raw)
            if b"/" in raw:  # some servers escape "/" in JSON strings
                needles.add(raw.replace(b"/", b"\\/"))
        self._needles = tuple(sorted(needles, key=len, reverse=True))
        self._firsts = tuple((n[:1], n) for n in self._needles)
        # One alternation, longest first: re's scan costs ~0.2 us per SSE chunk whatever the
        # number of credentials, where a loop of `in` tests costs ~0.5 us per credential.
        self._pattern = re.compile(b"|".join(map(re.escape, self._needles)) or b"(?!)")
        self._text_pattern = re.compile(self._pattern.pattern.decode(errors="surrogateescape"))
        self._newline_safe = all(b"\n" not in n for n in self._needles)

    def __bool__(self) -> bool:
        return bool(self._needles)

    def clean(self, data: bytes) -> bytes:
        """`data` with every credential replaced; the same object when there is none."""
        if self._pattern.search(data) is None:
            return data
        return self._pattern.sub(REDACTED, data)

    def clean_text(self, value: str) -> str:
        if self._text_pattern.search(value) is None:
            return value
        return self._text_pattern.sub(REDACTED.decode(), value)

    def clean_headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        return {name: self.clean_text(value) for name, value in headers.items()}

    def partial_tail(self, data: bytes) -> int:
        """Length of the longest end of `data` that begins a credential (0 nearly always).

        A credential split across two stream chunks is caught by holding this much back.
        Only bytes after a chunk's last character that can begin a credential are examined.
        """
        n = len(data)
        if self._newline_safe and data.endswith(b"\n"):
            return 0  # upstreams write whole SSE events: the usual case costs nothing more
        best = 0
        for first, needle in self._firsts:
            i = data.find(first, max(0, n - len(needle) + 1))
            while i >= 0 and n - i > best:
                if needle.startswith(data[i:]):
                    best = n - i
                    break
                i = data.find(first, i + 1)
        return best


@functools.lru_cache(maxsize=8)
def scrubber(secrets: tuple[str, ...]) -> Scrubber:
    """One scrubber per snapshot's credentials, built once (snapshots share the tuple)."""
    return Scrubber(secrets)


class _Filter(Protocol):
    @property
    def usage(self) -> Usage | None: ...

    def chunk(self, data: bytes) -> bytes: ...

    def end(self) -> bytes: ...


class ScrubbedStream:
    """A stream filter whose output has every credential replaced, across chunk boundaries.

    What is held back is the start of a credential, which has no newline, so it belongs to an
    SSE event that is not complete yet: no complete event is ever delayed.
    """

    __slots__ = ("_held", "_inner", "_scrub")

    def __init__(self, inner: _Filter, scrub: Scrubber) -> None:
        self._inner = inner
        self._scrub = scrub
        self._held = b""

    @property
    def usage(self) -> Usage | None:
        return self._inner.usage

    def chunk(self, data: bytes) -> bytes:
        out = self._inner.chunk(data)
        if self._held:
            out, self._held = self._held + out, b""
        if not out:
            return out
        out = self._scrub.clean(out)
        keep = self._scrub.partial_tail(out)
        if keep:
            out, self._held = out[:-keep], out[-keep:]
        return out

    def end(self) -> bytes:
        rest, self._held = self._held + self._inner.end(), b""
        return self._scrub.clean(rest)


def scrubbed(inner: _Filter, secrets: tuple[str, ...]) -> _Filter:
    """`inner` itself when there is no credential to look for (no cost per chunk then)."""
    scrub = scrubber(secrets)
    return ScrubbedStream(inner, scrub) if scrub else inner
