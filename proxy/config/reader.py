"""Read TOML tables into config dataclasses: typed checks, field defaults, errors by TOML path."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import types
import typing
from collections.abc import Mapping
from enum import Enum
from typing import Any, TypeVar

from proxy.config.schema import TOML, Key

T = TypeVar("T")


@dataclasses.dataclass(frozen=True, slots=True)
class _Field:
    attr: str
    key: Key
    toml: str
    kind: Any
    optional: bool
    default: Any


@functools.cache
def _fields(cls: Any) -> tuple[_Field, ...]:
    hints = typing.get_type_hints(cls)
    out: list[_Field] = []
    for f in dataclasses.fields(cls):
        key = f.metadata.get(TOML)
        if not isinstance(key, Key):
            continue
        kind: Any = hints[f.name]
        optional = False
        if isinstance(kind, types.UnionType):
            args = [a for a in typing.get_args(kind) if a is not type(None)]
            optional, kind = True, args[0]
        default = None if f.default is dataclasses.MISSING else f.default
        out.append(_Field(f.name, key, key.name or f.name, kind, optional, default))
    return tuple(out)


def keys_of(*classes: type) -> frozenset[str]:
    """The TOML keys the given config dataclasses accept."""
    return frozenset(f.toml for cls in classes for f in _fields(cls))


class Reader:
    """Collects every error with its TOML path instead of stopping at the first one."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def err(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    # --- whole dataclasses ---------------------------------------------------------------

    def read(
        self,
        cls: type[T],
        raw: Mapping[str, object],
        path: str,
        base: T | None = None,
        **given: Any,
    ) -> T:
        """Build `cls` from a TOML table: keys absent keep `base`'s value, else the default."""
        values = self.present(cls, raw, path, base)
        if base is not None:
            spec: Any = cls
            for f in _fields(spec):
                if f.attr not in values and not f.key.custom:
                    values[f.attr] = getattr(base, f.attr)
        values.update(given)
        return cls(**values)

    def present(
        self, cls: type, raw: Mapping[str, object], path: str, base: object = None
    ) -> dict[str, Any]:
        """The fields of `cls` this table sets, checked; for overrides on top of another value.

        A wrong value is reported and replaced by the base's (or the default), so one mistake
        does not cascade into errors about the settings that inherit it.
        """
        return {
            f.attr: self._value(raw, f, path, f.default if base is None else getattr(base, f.attr))
            for f in _fields(cls)
            if not f.key.custom and f.toml in raw
        }

    def _value(self, raw: Mapping[str, object], f: _Field, path: str, fallback: Any) -> Any:
        key, kind = f.key, f.kind
        if issubclass(kind, Enum):
            text = self.choice(raw, f.toml, path, tuple(str(m.value) for m in kind))
            return fallback if text is None else kind(text)
        if kind is bool:
            return self.boolean(raw, f.toml, path, fallback)
        if kind is str:
            text = (
                self.choice(raw, f.toml, path, key.choices)
                if key.choices
                else self.string(raw, f.toml, path)
            )
            return fallback if text is None else text
        lo = key.lo if key.lo is not None else 0.0
        if kind is int and key.unit == 1.0:
            return self.integer(raw, f.toml, path, fallback, lo=int(lo))
        value = self.number(raw, f.toml, path, math.nan, lo=lo)
        if math.isnan(value):
            return fallback
        return kind(value * key.unit)

    # --- single values -------------------------------------------------------------------

    def table(self, data: Mapping[str, object], key: str, path: str) -> Mapping[str, object]:
        value = data.get(key, {})
        if isinstance(value, Mapping):
            return value
        self.err(path, "must be a table")
        return {}

    def known(self, data: Mapping[str, object], allowed: frozenset[str], path: str) -> None:
        for key in data:
            if key not in allowed:
                close = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.6)
                hint = f'; did you mean "{close[0]}"?' if close else ""
                self.err(f"{path}.{key}" if path else key, f"unknown setting{hint}")

    def number(
        self, data: Mapping[str, object], key: str, path: str, default: float, *, lo: float = 0.0
    ) -> float:
        value = data.get(key, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < lo
        ):
            self.err(f"{path}.{key}", f"must be a number >= {lo:g}")
            return default
        return float(value)

    def integer(
        self, data: Mapping[str, object], key: str, path: str, default: int, *, lo: int = 0
    ) -> int:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            self.err(f"{path}.{key}", f"must be an integer >= {lo}")
            return default
        return value

    def boolean(self, data: Mapping[str, object], key: str, path: str, default: bool) -> bool:
        value = data.get(key, default)
        if not isinstance(value, bool):
            self.err(f"{path}.{key}", "must be true or false")
            return default
        return value

    def string(self, data: Mapping[str, object], key: str, path: str) -> str | None:
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            self.err(f"{path}.{key}", "must be a non-empty string")
            return None
        return value

    def choice(
        self, data: Mapping[str, object], key: str, path: str, choices: tuple[str, ...]
    ) -> str | None:
        value = data.get(key)
        if isinstance(value, str) and value in choices:
            return value
        self.err(f"{path}.{key}", f"must be one of {', '.join(choices)}")
        return None
