"""The provider seam: what failover and relay ask of a dialect, and the request it builds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from proxy.config.values import Endpoint, Upstream
from proxy.core.exchange import Exchange, Usage
from proxy.core.failures import FailureKind
from proxy.core.spliced import Spliced


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """One attempt as it goes on the wire: where, with which headers, and which bytes."""

    url: str
    headers: dict[str, str]
    body: bytes | Spliced
    max_response_bytes: int = 128 * 2**20
    """A successful non-stream answer larger than this is refused (`[server] max_response_mb`)."""
    progress: Progress | None = field(default=None, compare=False)
    """For a stream: tells answer data from keep-alive comments, so the time-to-first-byte
    deadline waits for data; None counts every byte."""


class Progress(Protocol):
    """Watches one stream's raw bytes for answer data (comments and keep-alives do not count)."""

    def feed(self, data: bytes) -> bool:
        """True when `data` carries part of an answer event."""
        ...


class StreamFilter(Protocol):
    """Sees every chunk of one committed stream; returns the bytes the client gets."""

    @property
    def usage(self) -> Usage | None:
        """The usage the stream reported, once its usage event went by."""
        ...

    def chunk(self, data: bytes) -> bytes: ...

    def end(self) -> bytes:
        """Bytes held back (a partial event) to send before the stream ends."""
        ...


class Provider(Protocol):
    """One API dialect. Pure: no I/O; the transport sends what `request` builds."""

    name: str

    def supports(self, up: Upstream, endpoint: Endpoint) -> bool:
        """Whether `up` can serve a client request to `endpoint` (else it is skipped)."""
        ...

    def request(self, up: Upstream, ex: Exchange) -> UpstreamRequest:
        """The upstream request for this exchange: URL, credential, model id, options."""
        ...

    def failure(self, status: int) -> FailureKind | None:
        """What an upstream status means for failover; None for a success."""
        ...

    def stream_status(self, first: bytes) -> int | None:
        """The HTTP status a 200 stream really means when its first bytes are an error event
        (Anthropic's `overloaded_error` mid-stream is a 529), so it can still fail over before
        the commit point; None for a stream that started well."""
        ...

    def usage(self, body: bytes) -> Usage | None:
        """Usage reported by a whole (non-streaming) answer."""
        ...

    def progress(self) -> Progress | None:
        """A fresh watcher for one stream of this dialect (deadlines count data, not comments);
        None when every byte is progress (binary framing with no keep-alives)."""

    def answer(self, status: int, body: bytes, ex: Exchange) -> bytes:
        """The client's bytes for a whole upstream answer (success or error), in the client's
        dialect: the same bytes when the dialects match."""
        ...

    def stream(self, up: Upstream, ex: Exchange) -> StreamFilter:
        """A filter for one committed stream from `up`: observes usage, hides what the gateway
        added on the client's behalf, translates when the dialects differ."""
        ...
