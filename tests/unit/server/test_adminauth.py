"""Tests for proxy.server.adminauth: the token, loopback opt-ins, never a remote without it."""

from __future__ import annotations

from proxy.config.values import Admin
from proxy.server.adminauth import allowed


def test_token_is_required_by_default() -> None:
    admin = Admin(token="t0k")
    assert allowed(admin, "Bearer t0k", "10.0.0.5", metrics=False)
    assert allowed(admin, "bearer t0k", "10.0.0.5", metrics=True)
    assert not allowed(admin, "Bearer nope", "127.0.0.1", metrics=False)
    assert not allowed(admin, None, "127.0.0.1", metrics=True)
    assert not allowed(admin, "t0k", "127.0.0.1", metrics=False)


def test_metrics_open_is_for_loopback_scrapers_and_metrics_only() -> None:
    admin = Admin(token="t0k", metrics_open=True)
    assert allowed(admin, None, "127.0.0.1", metrics=True)
    assert allowed(admin, None, "::ffff:127.0.0.1", metrics=True)
    assert not allowed(admin, None, "192.168.1.9", metrics=True)
    assert not allowed(admin, None, "127.0.0.1", metrics=False)


def test_loopback_without_token_is_an_explicit_choice() -> None:
    assert allowed(Admin(loopback_without_token=True), None, "::1", metrics=False)
    assert not allowed(Admin(loopback_without_token=True), None, "10.1.1.1", metrics=False)
    assert not allowed(Admin(), None, "127.0.0.1", metrics=False)
