"""The transport seam: how failover sends one attempt, and the start of the answer it gets back.

Production passes the aiohttp sender (`proxy.transport.forward`); unit tests pass a scripted
fake, so failover (and hedging) are tested without sockets.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from proxy.config.values import Timeouts
from proxy.core.failures import FailureKind
from proxy.providers.base import UpstreamRequest


class Reply(Protocol):
    """An answer that has started: status, headers, and its first bytes.

    `first` holds the first chunk of a successful stream, the whole body of any other success,
    or the (capped) body of an error status; `read` gives the rest of a stream (b"" at the end).
    """

    status: int
    headers: Mapping[str, str]
    first: bytes
    ttfb_s: float

    @property
    def read(self) -> Callable[[], Awaitable[bytes]]:
        """The next chunk of the rest of a stream; b"" at its end."""
        ...

    def release(self) -> None:
        """Done with it: the connection may be reused."""
        ...

    def close(self) -> None:
        """Abandon it: the connection is closed (the upstream stops generating)."""
        ...


class Send(Protocol):
    """Send one attempt and wait, within its deadlines, for the start of the answer.

    Raises AttemptFailed when nothing usable came back (connect, reset, TTFB timeout).
    """

    def __call__(
        self, request: UpstreamRequest, timeouts: Timeouts, *, stream: bool
    ) -> Awaitable[Reply]: ...


class AttemptFailed(Exception):
    """The attempt failed before any response started (nothing reached the client)."""

    def __init__(self, kind: FailureKind, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
