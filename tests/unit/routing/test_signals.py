"""Signals from other gateway processes applied to this one's stats, and emitted by its own."""

from __future__ import annotations

import random

from proxy.config.values import Ejection
from proxy.routing.signals import Signal, SignalSink, apply, identity
from proxy.routing.stats import Health, UpstreamStats


def test_a_remote_pause_takes_the_upstream_out_until_it_ends_then_one_probe() -> None:
    st = UpstreamStats("a", "fp", Ejection())
    assert apply(st, Signal.PAUSE, 5.0, 100.0)
    assert st.health(101.0) is Health.RATE_LIMITED
    assert not st.available(104.9)
    assert not apply(st, Signal.PAUSE, 2.0, 101.0)  # already paused for longer
    assert st.take_limit_probe(105.1)
    assert not st.available(105.1)


def test_a_remote_ejection_does_not_grow_the_local_ejection_count() -> None:
    st = UpstreamStats("a", "fp", Ejection())
    assert apply(st, Signal.EJECT, 10.0, 50.0)
    assert st.health(55.0) is Health.EJECTED
    assert st.ejections == 0
    assert st.acquire(60.5)  # the probe after it
    assert st.record_success(60.6).value == "recovered"


def test_local_pause_and_ejection_are_emitted_once_each() -> None:
    sink = SignalSink()
    seen: list[tuple[str, Signal, float]] = []
    sink.emit = lambda fp, sig, s: seen.append((fp, sig, s))
    st = UpstreamStats("a", "fp", Ejection(consecutive_failures=1, jitter=0.0), sink)
    st.record_rate_limit(0.0, 3.0)
    st.record_failure(1.0, random.Random(1))
    assert seen == [("fp", Signal.PAUSE, 3.0), ("fp", Signal.EJECT, 10.0)]
    apply(st, Signal.PAUSE, 30.0, 2.0)
    assert len(seen) == 2  # what others said is never said again


def test_identity_is_stable_and_hides_the_fingerprint() -> None:
    assert identity("openai|http://x|m|abc") == identity("openai|http://x|m|abc")
    assert identity("a") != identity("b")
    assert "abc" not in identity("openai|http://x|m|abc")
