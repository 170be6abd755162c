"""A request body sent as pieces of the client's bytes, some spans replaced."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Spliced:
    """A body sent as pieces: views of the client's bytes with a few spans replaced (the model
    id, the usage option). Never joined, so renaming the model of a large body copies none of
    it; the transport writes the pieces one after another."""

    parts: tuple[bytes | memoryview, ...]
    size: int

    def __len__(self) -> int:
        return self.size

    def __bytes__(self) -> bytes:
        return b"".join(self.parts)
