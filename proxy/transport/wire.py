"""An upstream request's bytes on the wire: its origin, request line and header block."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

from yarl import URL

from proxy.transport.pool import Origin


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed upstream URL: where to connect and the start of every request head to it."""

    origin: Origin
    start: str
    """`POST <path> HTTP/1.1\\r\\nHost: <host>\\r\\n`."""


class BadTarget(ValueError):
    """An upstream URL the transport cannot send to (the config compiler rejects these)."""


@functools.lru_cache(maxsize=4096)
def target(url: str) -> Target:
    """Parsed once per distinct URL: parsing a URL string is a visible cost per request."""
    u = URL(url)
    if u.scheme not in ("http", "https") or not u.raw_host or u.port is None:
        raise BadTarget(f"not an http(s) URL: {u.scheme}://{u.raw_host or ''}")
    host = u.host_port_subcomponent  # the default port left out, IPv6 in brackets, IDNA
    path = u.raw_path_qs or "/"
    start = f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
    if _unsafe(start, 2):
        raise BadTarget("control characters in the upstream URL")
    return Target(Origin(u.raw_host, u.port, u.scheme == "https"), start)


def request_head(t: Target, headers: Mapping[str, str], length: int) -> bytes:
    """The request line and headers of a POST with a body of `length` bytes.

    Header names and values come from the config, the provider and the client's allow-listed
    headers; a CR or LF in any of them (header injection, request smuggling) is refused.
    """
    block = header_block(headers)
    # surrogateescape: a client header that was not UTF-8 goes on as the bytes it came as
    # (aiohttp's parser decodes them the same way), never as an encoding error.
    head = f"{t.start}{block}Content-Length: {length}\r\n\r\n"
    return head.encode("utf-8", "surrogateescape")


def header_block(headers: Mapping[str, str]) -> str:
    """`Name: value` lines, each ended by CRLF; a CR, LF or NUL inside a name or a value
    (header injection, response splitting) is refused."""
    block = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
    if _unsafe(block, len(headers)):
        raise ValueError("a header name or value holds a line break")
    return block


def _unsafe(text: str, lines: int) -> bool:
    """More line breaks (or NULs) than the `lines` CRLFs that end the lines we wrote."""
    return text.count("\n") != lines or text.count("\r") != lines or "\0" in text
