"""Large request bodies sent upstream in slices of the one buffer they were read into."""

from __future__ import annotations

from aiohttp import payload
from aiohttp.abc import AbstractStreamWriter

SLICED_ABOVE = 1 << 20
"""Bodies larger than this are sent as a `SlicedBody`; smaller ones as plain bytes."""
SLICE = 1 << 16


class SlicedBody(payload.Payload):
    """Writes memoryview slices of the body: no copy of it, and flow control per slice.

    aiohttp sends plain bytes with the request head in one joined write (on Python before
    3.12.9, where it avoids `writelines`) and slices a bytearray to its Content-Length: each
    a full copy of a body that may be tens of MB.
    """

    _autoclose = True

    def __init__(self, value: bytes) -> None:
        super().__init__(value, content_type="application/json")
        self._size = len(value)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return bytes(self._value).decode(encoding, errors)

    async def write(self, writer: AbstractStreamWriter) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(
        self, writer: AbstractStreamWriter, content_length: int | None
    ) -> None:
        with memoryview(self._value) as view:
            end = len(view) if content_length is None else min(content_length, len(view))
            for at in range(0, end, SLICE):
                await writer.write(view[at : min(at + SLICE, end)])


def upstream_body(body: bytes) -> bytes | SlicedBody:
    """What to hand aiohttp as the request body."""
    return SlicedBody(body) if len(body) > SLICED_ABOVE else body
