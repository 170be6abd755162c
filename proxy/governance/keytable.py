"""Compile parsed keys.toml into a KeyTable; each error names its TOML path."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from types import MappingProxyType

from proxy.config.reader import Reader, keys_of
from proxy.config.values import ConfigError
from proxy.governance.limits import Key, KeyTable, Limits, Team

SECTIONS = frozenset({"salt", "keys", "teams"})
KEY_KEYS = keys_of(Key, Limits) | {"created"}
TEAM_KEYS = keys_of(Limits)
_HEX64 = re.compile(r"[0-9a-f]{64}")


def compile_keys(data: Mapping[str, object]) -> KeyTable:
    """Validate the whole keys file; raise ConfigError listing every problem."""
    r = Reader()
    r.known(data, SECTIONS, "")
    salt = data.get("salt")
    if not isinstance(salt, str) or len(salt) < 16:
        r.err("salt", "must be a string of at least 16 characters (written by `gateway keys`)")
        salt = ""
    teams: dict[str, Team] = {}
    for name, raw in r.table(data, "teams", "teams").items():
        path = f"teams.{name}"
        if not isinstance(raw, Mapping):
            r.err(path, "must be a table")
            continue
        r.known(raw, TEAM_KEYS, path)
        teams[name] = Team(name=name, limits=r.read(Limits, raw, path))
    by_hash: dict[str, Key] = {}
    for name, raw in r.table(data, "keys", "keys").items():
        key = _key(r, name, raw, teams)
        if key is None:
            continue
        if key.hash in by_hash:
            r.err(f"keys.{name}.hash", f"same hash as key {by_hash[key.hash].name}")
        by_hash[key.hash] = key
    if r.errors:
        raise ConfigError(r.errors)
    return KeyTable(
        salt=salt.encode(),
        by_hash=MappingProxyType(by_hash),
        teams=MappingProxyType(teams),
    )


def _key(r: Reader, name: str, raw: object, teams: Mapping[str, Team]) -> Key | None:
    path = f"keys.{name}"
    if not isinstance(raw, Mapping):
        r.err(path, "must be a table")
        return None
    r.known(raw, KEY_KEYS, path)
    digest = raw.get("hash")
    if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
        r.err(f"{path}.hash", "must be a SHA-256 in hex (written by `gateway keys new`)")
        digest = ""
    routes = raw.get("routes")
    allowed: frozenset[str] | None = None
    if routes is not None:
        if not isinstance(routes, list) or not all(isinstance(x, str) for x in routes):
            r.err(f"{path}.routes", "must be a list of route names")
        else:
            allowed = frozenset(routes)
    expires = raw.get("expires")
    if isinstance(expires, str):
        try:
            expires = dt.date.fromisoformat(expires)
        except ValueError:
            expires = False
    if expires is not None and (
        not isinstance(expires, dt.date) or isinstance(expires, dt.datetime)
    ):
        r.err(f"{path}.expires", "must be a date (YYYY-MM-DD)")
        expires = None
    key = r.read(
        Key,
        raw,
        path,
        name=name,
        hash=digest,
        routes=allowed,
        expires=expires,
        limits=r.read(Limits, raw, path),
    )
    if key.team is not None and key.team not in teams:
        r.err(f"{path}.team", f'unknown team "{key.team}" (add [teams.{key.team}])')
    return key
