"""Reading a client's request body within its byte cap, memory bound and per-chunk deadline."""

from __future__ import annotations

import asyncio
from typing import cast

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from proxy.core.errors import bad_request, too_large
from proxy.server.inflightbodies import BodyClaim

BUFFER_AT = 1 << 20
"""Bodies of a known length above this are read into one preallocated buffer."""


async def read_body(
    request: web.BaseRequest,
    limit: int,
    claim: BodyClaim,
    deadline: asyncio.Timeout | None,
    step: float = 0.0,
) -> bytes:
    """The whole body: 413 beyond `limit`, 400 on bad framing; counted against the claim.
    With a `deadline`, each chunk moves it `step` seconds on."""
    length = request.content_length
    if length is not None and length > limit:
        raise too_large(limit)
    try:
        if length is not None:
            claim.grow(length)  # the global bound on body memory, before reading a byte
            if length > BUFFER_AT:
                return await _read_into(request, length, deadline, step)
        parts: list[bytes] = []
        size = 0
        loop = asyncio.get_running_loop()
        while chunk := await request.content.readany():
            if deadline is not None:
                deadline.reschedule(loop.time() + step)  # the timeout is between chunks
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            if length is None:
                claim.grow(len(chunk))
            parts.append(chunk)
    except HttpProcessingError:
        # A body the HTTP parser refused (bad chunk framing, short Content-Length): a 400.
        raise bad_request("The request body is not valid HTTP framing.") from None
    return parts[0] if len(parts) == 1 else b"".join(parts)


async def _read_into(
    request: web.BaseRequest, length: int, deadline: asyncio.Timeout | None, step: float
) -> bytes:
    """A large body of known length, read into one buffer: no list of chunks joined at the
    end, which would hold the body twice for a moment."""
    buf = bytearray(length)
    view = memoryview(buf)
    at = 0
    loop = asyncio.get_running_loop()
    while chunk := await request.content.readany():
        if deadline is not None:
            deadline.reschedule(loop.time() + step)
        end = at + len(chunk)
        if end > length:
            raise bad_request("The request body is longer than its Content-Length.")
        view[at:end] = chunk
        at = end
    if at != length:
        raise bad_request("The request body is shorter than its Content-Length.")
    view.release()
    # Never written again, and bytearray reads like bytes for every consumer (find, slices,
    # orjson, hashlib, aiohttp); converting would copy the body once more. It is not hashable:
    # a key derived from a body is a digest, never the body itself.
    return cast(bytes, buf)
