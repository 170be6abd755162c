"""Tests for proxy.routing.backoff: which failures retry the same upstream, and the pause."""

from __future__ import annotations

import random

import pytest

from proxy.core.failures import FailureKind
from proxy.routing.backoff import (
    RETRY_BASE_S,
    RETRY_MAX_S,
    fits_deadline,
    may_retry_same,
    retry_delay_s,
)


@pytest.mark.parametrize(
    ("kind", "status", "expected"),
    [
        (FailureKind.UPSTREAM_5XX, 500, True),
        (FailureKind.UPSTREAM_5XX, 502, True),
        (FailureKind.UPSTREAM_5XX, 503, True),
        (FailureKind.CONNECT, None, True),
        (FailureKind.RESET, None, True),
        (FailureKind.UPSTREAM_5XX, 501, False),
        (FailureKind.UPSTREAM_5XX, 302, False),
        (FailureKind.UPSTREAM_5XX, 408, False),
        (FailureKind.TTFB_TIMEOUT, None, False),
        (FailureKind.RATE_LIMITED, 429, False),
        (FailureKind.UPSTREAM_AUTH, 401, False),
        (FailureKind.RESPONSE_TOO_LARGE, None, False),
        (None, None, False),
    ],
)
def test_which_failures_may_heal_on_the_same_upstream(
    kind: FailureKind | None, status: int | None, expected: bool
) -> None:
    assert may_retry_same(kind, status) is expected


def test_the_pause_doubles_is_capped_and_jittered_within_half() -> None:
    rng = random.Random(3)
    for retry in range(1, 12):
        full = min(RETRY_BASE_S * 2 ** (retry - 1), RETRY_MAX_S)
        delays = [retry_delay_s(retry, rng) for _ in range(200)]
        assert all(full / 2 <= d <= full for d in delays)
        assert max(delays) - min(delays) > full / 4  # really jittered


def test_the_pause_must_fit_the_deadline() -> None:
    assert fits_deadline(0.5, 0.1, 1.0)
    assert not fits_deadline(0.95, 0.1, 1.0)
