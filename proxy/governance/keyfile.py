"""keys.toml on disk: read and compile it, and the edits `gateway keys ...` makes (tomli-w)."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from proxy.config.values import ConfigError
from proxy.governance.keyhash import hash_key, new_key, new_salt
from proxy.governance.keytable import compile_keys
from proxy.governance.limits import KeyTable

LIMIT_FLAGS = ("rpm", "tpm", "max_parallel", "usd_per_day", "usd_per_month", "usd_total")


def keys_path(config_path: Path, keys_file: str) -> Path:
    """`[server] keys_file`, relative to gateway.toml's folder."""
    p = Path(keys_file)
    return p if p.is_absolute() else config_path.parent / p


def read_raw(path: Path) -> dict[str, Any]:
    """The parsed file, or an empty one (with a fresh salt) if it does not exist yet."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return {"salt": new_salt(), "teams": {}, "keys": {}}
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"TOML syntax: {exc}"]) from None


def load(path: Path) -> KeyTable | None:
    """The compiled keys file, or None when there is none (the gateway is then open)."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"cannot read {path}: {type(exc).__name__}"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"TOML syntax: {exc}"]) from None
    return compile_keys(data)


def write_raw(path: Path, data: dict[str, Any]) -> None:
    """Validate, then replace the file atomically (a running gateway never reads half of it)."""
    compile_keys(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            tomli_w.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o640)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def add_key(data: dict[str, Any], name: str, fields: dict[str, Any]) -> str:
    """Add key `name`; returns the secret (shown once, never stored)."""
    keys = data.setdefault("keys", {})
    if name in keys:
        raise ConfigError([f"keys.{name}: already exists (use `rotate` for a new secret)"])
    team = fields.get("team")
    if team is not None:
        data.setdefault("teams", {}).setdefault(team, {})
    secret = new_key()
    entry: dict[str, Any] = {"hash": hash_key(data["salt"].encode(), secret)}
    entry.update({k: v for k, v in fields.items() if v is not None})
    entry["created"] = dt.datetime.now(dt.UTC).replace(microsecond=0)
    keys[name] = entry
    return secret


def rotate_key(data: dict[str, Any], name: str) -> str:
    entry = _entry(data, name)
    secret = new_key()
    entry["hash"] = hash_key(data["salt"].encode(), secret)
    return secret


def set_disabled(data: dict[str, Any], name: str, disabled: bool) -> None:
    _entry(data, name)["disabled"] = disabled


def remove_key(data: dict[str, Any], name: str) -> None:
    _entry(data, name)
    del data["keys"][name]


def _entry(data: dict[str, Any], name: str) -> dict[str, Any]:
    entry = data.get("keys", {}).get(name)
    if not isinstance(entry, dict):
        raise ConfigError([f"keys.{name}: no such key"])
    return entry
