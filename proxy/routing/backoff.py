"""When the upstream that just failed may be tried again, and the jittered pause before it."""

from __future__ import annotations

import random

from proxy.core.failures import FailureKind

RETRY_BASE_S = 0.1
"""The pause before the first retry of the same upstream; it doubles with each retry ..."""
RETRY_MAX_S = 1.0
"""... up to this."""

_MAY_HEAL = frozenset({FailureKind.CONNECT, FailureKind.RESET, FailureKind.UPSTREAM_5XX})
"""A refused connection, a reset, a 5xx: often over in a moment (a restart, a bad replica). A
TTFB timeout already spent its wait, a 429 is a pause, a 401/403 is a credential problem."""


def may_retry_same(kind: FailureKind | None, status: int | None) -> bool:
    """True when the failure might not happen again on the same upstream a moment later."""
    if kind not in _MAY_HEAL:
        return False
    # A redirect (never followed) or a 501 (not implemented) answers the same every time.
    return status is None or (status >= 500 and status != 501)


def retry_delay_s(retry: int, rng: random.Random) -> float:
    """The pause before retry number `retry` (1 for the first): exponential, capped, with
    equal jitter (uniform in [d/2, d]) so requests failing together do not retry together."""
    d = min(RETRY_BASE_S * 2.0 ** max(retry - 1, 0), RETRY_MAX_S)
    return d * (0.5 + 0.5 * rng.random())


def fits_deadline(elapsed_s: float, delay_s: float, limit_s: float) -> bool:
    """A retry is worth its pause only if it can start before the request's deadline."""
    return elapsed_s + delay_s < limit_s
