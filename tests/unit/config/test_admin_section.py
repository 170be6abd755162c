"""Tests for the [admin] section of gateway.toml."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.config.compiler import compile_data
from proxy.config.values import ConfigError


def data(**admin: object) -> dict[str, Any]:
    return {
        "server": {"listen": "127.0.0.1:8080"},
        "upstreams": {"u": {"base_url": "http://127.0.0.1:9/v1"}},
        "routes": {"chat": {"tiers": [{"u": 1}]}},
        "admin": admin,
    }


def test_admin_needs_a_token_or_an_explicit_loopback_opening() -> None:
    with pytest.raises(ConfigError) as info:
        compile_data(data(listen="127.0.0.1:9090"), {})
    assert info.value.errors[0].startswith("admin.token: is required")
    assert compile_data(data(loopback_without_token=True), {}).admin is not None
    assert compile_data(data(metrics_open=True), {}).admin is not None


def test_admin_is_off_when_absent() -> None:
    d = data()
    del d["admin"]
    assert compile_data(d, {}).admin is None


def test_admin_token_from_env_is_a_secret() -> None:
    cfg = compile_data(
        data(listen="127.0.0.1:9090", token="env:ADM", metrics_open=True), {"ADM": "s3"}
    )
    assert cfg.admin is not None
    assert (cfg.admin.host, cfg.admin.port, cfg.admin.token, cfg.admin.metrics_open) == (
        "127.0.0.1",
        9090,
        "s3",
        True,
    )
    assert "s3" in cfg.secrets and "s3" not in repr(cfg.admin)


@pytest.mark.parametrize(
    ("admin", "error"),
    [
        ({"listen": "127.0.0.1:8080", "metrics_open": True}, "admin.listen: must differ"),
        ({"listen": "nope", "metrics_open": True}, "admin.listen: must be"),
        ({"token": "plain-secret"}, 'admin.token: must be "env:VARIABLE"'),
        ({"token": "env:MISSING"}, "admin.token: environment variable MISSING is not set"),
        ({"metrics_opn": True, "metrics_open": True}, "admin.metrics_opn: unknown setting"),
    ],
)
def test_admin_errors_name_their_path(admin: dict[str, object], error: str) -> None:
    with pytest.raises(ConfigError) as info:
        compile_data(data(**admin), {})
    assert any(e.startswith(error) for e in info.value.errors), info.value.errors
