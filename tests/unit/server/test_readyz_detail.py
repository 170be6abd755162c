"""Who sees per-upstream state on /readyz: `[server] readyz_detail`."""

from __future__ import annotations

import pytest

from proxy.server.endpoints import shows_detail


@pytest.mark.parametrize(
    ("remote", "expected"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.5", False),
        ("::ffff:10.0.0.5", False),
        ("2001:db8::1", False),
        ("not-an-ip", False),
        (None, False),
    ],
)
def test_loopback_policy_shows_detail_only_to_this_machine(
    remote: str | None, expected: bool
) -> None:
    assert shows_detail("loopback", remote) is expected


def test_always_and_never() -> None:
    assert shows_detail("always", "203.0.113.7") is True
    assert shows_detail("never", "127.0.0.1") is False
