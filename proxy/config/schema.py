"""How a config dataclass field is spelled in gateway.toml: its key, bounds and unit."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

TOML = "toml"
"""The field-metadata key that holds a field's `Key`."""


@dataclass(frozen=True, slots=True)
class Key:
    """One TOML key of a section. Fields without a Key are computed, never read from the file."""

    name: str | None = None
    """The TOML key when it differs from the field name."""
    lo: float | None = None
    """Smallest accepted value of a number."""
    choices: tuple[str, ...] = ()
    """Accepted values of a string (an enum field takes its values from the enum)."""
    unit: float = 1.0
    """Multiplier from the TOML value to the field (MiB in the file, bytes in the field)."""
    custom: bool = False
    """The key is known, but the section's own code reads it (e.g. `listen` into host, port)."""


def setting(default: Any, key: str | None = None, **spec: Any) -> Any:
    """A dataclass field read from gateway.toml, with its default stated once, here."""
    meta = {TOML: Key(name=key, **spec)}
    if isinstance(default, list | dict | set):
        raise TypeError("mutable defaults are not settings")
    return dataclasses.field(default=default, metadata=meta)


def custom(default: Any = dataclasses.MISSING, key: str | None = None) -> Any:
    """A field whose TOML key the section reads itself (the key still counts as known)."""
    meta = {TOML: Key(name=key, custom=True)}
    return dataclasses.field(default=default, metadata=meta)
