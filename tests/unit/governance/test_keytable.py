"""keys.toml compiled: keys by hash, teams, limits, expiry, errors by TOML path."""

from __future__ import annotations

import datetime as dt

import pytest

from proxy.config.values import ConfigError
from proxy.governance.keyfile import add_key, read_raw, remove_key, rotate_key, set_disabled
from proxy.governance.keyhash import hash_key
from proxy.governance.keytable import compile_keys


def test_a_new_key_is_found_by_its_hash_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = read_raw(tmp_path / "keys.toml")
    secret = add_key(data, "alice", {"team": "search", "rpm": 10, "routes": ["chat"]})
    table = compile_keys(data)
    key = table.by_hash[hash_key(table.salt, secret)]
    assert key.name == "alice"
    assert key.team == "search"
    assert key.limits.rpm == 10
    assert key.routes == frozenset({"chat"})
    assert "search" in table.teams
    assert secret not in repr(data)


def test_rotate_disable_remove(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = read_raw(tmp_path / "keys.toml")
    old = add_key(data, "bob", {})
    new = rotate_key(data, "bob")
    table = compile_keys(data)
    assert hash_key(table.salt, old) not in table.by_hash
    assert hash_key(table.salt, new) in table.by_hash
    set_disabled(data, "bob", True)
    assert not compile_keys(data).by_hash[hash_key(table.salt, new)].usable(1.7e9)
    remove_key(data, "bob")
    assert not compile_keys(data).by_hash
    with pytest.raises(ConfigError):
        remove_key(data, "bob")


def test_expiry_is_inclusive(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = read_raw(tmp_path / "keys.toml")
    add_key(data, "c", {"expires": dt.date(2026, 12, 3)})
    (key,) = compile_keys(data).by_hash.values()
    last_second = dt.datetime(2026, 12, 3, 23, 59, 59, tzinfo=dt.UTC).timestamp()
    assert key.usable(last_second)
    assert not key.usable(last_second + 1)


def test_errors_name_their_path() -> None:
    bad = {
        "salt": "0123456789abcdef",
        "keys": {
            "a": {"hash": "nothex", "rpm": 0, "team": "ghost", "oops": 1},
            "b": {"hash": "a" * 64, "expires": "tomorrow", "usd_per_day": -1},
        },
    }
    with pytest.raises(ConfigError) as info:
        compile_keys(bad)
    text = "\n".join(info.value.errors)
    for path in (
        "keys.a.hash",
        "keys.a.rpm",
        "keys.a.team",
        "keys.a.oops",
        "keys.b.expires",
        "keys.b.usd_per_day",
    ):
        assert path in text
