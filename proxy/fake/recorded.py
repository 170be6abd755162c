"""One request as the fake provider received it."""

from __future__ import annotations

from dataclasses import dataclass

import orjson


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the fake received it (headers in their original case)."""

    at: float
    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    query: str = ""

    def header(self, name: str) -> str | None:
        """The first value of a header, case-insensitive."""
        lower = name.lower()
        return next((v for k, v in self.headers if k.lower() == lower), None)

    def json(self) -> dict[str, object]:
        """The body as a JSON object (empty if it is not one)."""
        try:
            obj = orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return {}
        return obj if isinstance(obj, dict) else {}
