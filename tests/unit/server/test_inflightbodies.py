"""The in-flight body bound: large bodies refused past it, small ones counted, all released."""

from __future__ import annotations

import pytest

from proxy.core.errors import GatewayError
from proxy.server.inflightbodies import SMALL_BODY, InflightBodies

MIB = 2**20


def test_large_bodies_past_the_bound_are_refused_with_a_retryable_503() -> None:
    pool = InflightBodies()
    first = pool.claim(10 * MIB)
    first.grow(8 * MIB)
    second = pool.claim(10 * MIB)
    with pytest.raises(GatewayError) as err:
        second.grow(4 * MIB)
    assert err.value.status == 503
    assert err.value.headers()["Retry-After"] == "1"
    assert (pool.held, pool.refused) == (8 * MIB, 1)
    small = pool.claim(10 * MIB)
    small.grow(SMALL_BODY)  # over the bound in total, but small: counted, not refused
    small.grow(0)
    assert pool.held == 8 * MIB + SMALL_BODY
    first.release()
    small.release()
    small.release()  # releasing twice gives back nothing more
    assert pool.held == 0
    second.grow(4 * MIB)
    assert pool.held == 4 * MIB


def test_a_chunked_body_is_refused_once_it_grows_large_past_the_bound() -> None:
    pool = InflightBodies()
    other = pool.claim(3 * MIB)
    other.grow(2 * MIB)
    claim = pool.claim(3 * MIB)
    claim.grow(SMALL_BODY // 2)
    claim.grow(SMALL_BODY // 2)  # still small
    with pytest.raises(GatewayError):
        claim.grow(1)
    claim.release()
    assert pool.held == 2 * MIB
