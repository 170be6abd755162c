"""Per-upstream selection signals: peak-EWMA time to first byte, in-flight, failures, ejection."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from enum import StrEnum

from proxy.config.values import Ejection, Upstream
from proxy.core.failures import FailureKind
from proxy.routing.capacity import CapacityState
from proxy.routing.signals import Signal, SignalSink

EWMA_DECAY_S = 10.0
"""Time constant of the TTFB average: samples older than ~10 s weigh little (Finagle's default)."""
FAILURE_DECAY_S = 30.0
"""Time constant of the recent-failure penalty used by the latency strategy."""
IDLE_FORGET_S = 60.0
"""An upstream not measured for this long drifts back toward the optimistic prior."""


class Health(StrEnum):
    HEALTHY = "healthy"
    EJECTED = "ejected"
    PROBE_PENDING = "probe_pending"
    """The ejection is over, but no probe has said yet whether the upstream is back."""
    PROBING = "probing"
    RATE_LIMITED = "rate_limited"
    DRAINED = "drained"
    """Taken out of selection at runtime by an operator (admin API), until undrained."""


class Transition(StrEnum):
    """What a recorded outcome changed, so the caller can log it once."""

    NONE = "none"
    EJECTED = "ejected"
    RECOVERED = "recovered"


class UpstreamStats:
    """Mutable signals of one upstream; every method takes `now` (monotonic seconds)."""

    __slots__ = (
        "capacity",
        "drained",
        "ejected_at",
        "ejected_until",
        "ejection",
        "ejections",
        "ewma_ttfb_s",
        "failure_at",
        "failure_score",
        "failures",
        "fingerprint",
        "inflight",
        "last_ejection_s",
        "last_failure",
        "limit_probe",
        "limit_probing",
        "limited_until",
        "name",
        "probing",
        "sampled_at",
        "sink",
    )

    def __init__(
        self, name: str, fingerprint: str, ejection: Ejection, sink: SignalSink | None = None
    ) -> None:
        self.name = name
        self.sink = sink
        """Where a pause or an ejection is told to other gateway processes (shared state)."""
        self.fingerprint = fingerprint
        self.ejection = ejection
        self.ewma_ttfb_s: float | None = None
        self.sampled_at = 0.0
        self.inflight = 0
        self.failures = 0
        self.failure_score = 0.0
        self.failure_at = 0.0
        self.ejected_until = 0.0
        self.ejected_at = 0.0
        self.ejections = 0
        self.probing = False
        self.limited_until = 0.0
        self.last_failure: FailureKind | None = None
        self.last_ejection_s = 0.0
        self.limit_probe = False
        """A 429 pause is over (or running) and one request must see whether it ended."""
        self.limit_probing = False
        self.drained = False
        """Drained by an operator at runtime: no new attempts until undrained."""
        self.capacity = CapacityState()
        """Provider limits (`rpm`, `tpm`): own use and reported remaining; for declared limits."""

    # --- reading -----------------------------------------------------------------------------

    def health(self, now: float) -> Health:
        if self.drained:
            return Health.DRAINED
        if self.limited_until > now:
            return Health.RATE_LIMITED
        if self.ejected_until == 0.0:
            return Health.HEALTHY
        if self.ejected_until > now:
            return Health.EJECTED
        return Health.PROBING if self.probing else Health.PROBE_PENDING

    def available(self, now: float) -> bool:
        """In selection: not rate-limited, not ejected, and not waiting on a recovery probe."""
        if self.limited_until > now or self.limit_probing or self.drained:
            return False
        return self.ejected_until == 0.0 or (self.ejected_until <= now and not self.probing)

    def ttfb_estimate(self, now: float) -> float:
        """Peak-EWMA TTFB, relaxed toward 0 (optimistic) the longer it goes unmeasured."""
        if self.ewma_ttfb_s is None:
            return 0.0
        idle = now - self.sampled_at
        if idle <= 1.0:
            return self.ewma_ttfb_s
        return self.ewma_ttfb_s * math.exp(-idle / IDLE_FORGET_S)

    def latency_score(self, now: float) -> float:
        """Lower is better: expected TTFB scaled by queueing (in-flight) and recent failures."""
        penalty = self.failure_score * math.exp(-(now - self.failure_at) / FAILURE_DECAY_S)
        return (self.ttfb_estimate(now) + 0.001) * (1 + self.inflight) * (1.0 + 4.0 * penalty)

    # --- recording ---------------------------------------------------------------------------

    def acquire(self, now: float) -> bool:
        """Count an attempt in flight; return True when it is the probe after an ejection."""
        self.inflight += 1
        if self.ejected_until != 0.0 and self.ejected_until <= now and not self.probing:
            self.probing = True
            return True
        return False

    def take_limit_probe(self, now: float) -> bool:
        """After a 429 pause, the first attempt is its probe: True for that one, and until it
        ends (`end_limit_probe`) the upstream stays out of selection."""
        if self.limit_probe and not self.limit_probing and self.limited_until <= now:
            self.limit_probing = True
            return True
        return False

    def end_limit_probe(self, now: float) -> None:
        """The probe is over: the pause ends, unless its answer was another 429."""
        self.limit_probing = False
        if self.limited_until <= now:
            self.limit_probe = False

    def drop_limit_probe(self) -> None:
        """The probe went without an answer (client gone): the next attempt probes instead."""
        self.limit_probing = False

    def clear_pause(self) -> None:
        """Forget a 429 pause (the upstream's definition changed on reload)."""
        self.limited_until = 0.0
        self.limit_probe = False
        self.limit_probing = False

    def release(self) -> None:
        self.inflight -= 1

    def record_ttfb(self, ttfb_s: float, now: float) -> None:
        old = self.ewma_ttfb_s
        if old is None or ttfb_s >= old:
            # Peak sensitivity: a slowdown counts at once, a speed-up is averaged in.
            self.ewma_ttfb_s = ttfb_s
        else:
            w = math.exp(-max(now - self.sampled_at, 0.0) / EWMA_DECAY_S)
            self.ewma_ttfb_s = w * old + (1.0 - w) * ttfb_s
        self.sampled_at = now

    def record_success(self, now: float) -> Transition:
        self.failures = 0
        if self.ejected_until != 0.0:
            self.ejected_until = 0.0
            self.probing = False
            return Transition.RECOVERED
        if self.ejections and now - self.ejected_at > self.ejection.max_s:
            self.ejections = 0
        return Transition.NONE

    def record_failure(
        self, now: float, rng: random.Random, kind: FailureKind | None = None
    ) -> Transition:
        self.failures += 1
        if kind is not None:
            self.last_failure = kind
        decayed = self.failure_score * math.exp(-(now - self.failure_at) / FAILURE_DECAY_S)
        self.failure_score = decayed + 1.0
        self.failure_at = now
        if self.probing or (
            self.ejected_until == 0.0 and self.failures >= self.ejection.consecutive_failures
        ):
            self.eject(now, rng)
            return Transition.EJECTED
        return Transition.NONE

    def record_neutral(self) -> None:
        """An attempt that says nothing about health (client gone, client error): end a probe."""
        self.probing = False

    def record_rate_limit(self, now: float, delay_s: float) -> None:
        """Keep the upstream out of selection for the time the provider asked; not a failure."""
        self.limited_until = max(self.limited_until, now + delay_s)
        self.limit_probe = True
        self.probing = False
        if self.sink is not None and self.sink.emit is not None:
            self.sink.emit(self.fingerprint, Signal.PAUSE, delay_s)

    def eject(self, now: float, rng: random.Random) -> None:
        self.ejections += 1
        pol = self.ejection
        duration = min(pol.base_s * self.ejections, pol.max_s) * (1.0 + pol.jitter * rng.random())
        self.ejected_until = now + duration
        self.last_ejection_s = duration
        self.ejected_at = now
        self.probing = False
        if self.sink is not None and self.sink.emit is not None:
            self.sink.emit(self.fingerprint, Signal.EJECT, duration)

    def remaining_s(self, now: float) -> float:
        """How long until this upstream is selectable again (0 when it is)."""
        until = max(self.limited_until, self.ejected_until if self.ejected_until > now else 0.0)
        return max(until - now, 0.0)


RETIRED_KEEP_S = 300.0
"""How long the stats of an upstream removed by a reload are kept in case it comes back."""


class StatsRegistry:
    """All upstream stats of this process, keyed by upstream name; survives reloads."""

    __slots__ = ("_by_name", "_defined", "_retired", "sink")

    def __init__(self) -> None:
        self.sink = SignalSink()
        self._by_name: dict[str, UpstreamStats] = {}
        self._defined: dict[str, Upstream] = {}
        """The definition each upstream had when last seen in a snapshot."""
        self._retired: dict[str, tuple[UpstreamStats, float]] = {}
        """Stats of upstreams a reload removed, with when: they come back if it returns."""

    def current(self) -> dict[str, UpstreamStats]:
        """The stats of the upstreams of the running snapshot, by name (read-only use)."""
        return self._by_name

    def get(self, up: Upstream) -> UpstreamStats:
        st = self._by_name.get(up.name)
        if st is not None and st.fingerprint == up.fingerprint:
            return st
        # Only reached by a request still running on a snapshot older than the last reload.
        return UpstreamStats(up.name, up.fingerprint, up.ejection)

    def reconcile(
        self, upstreams: Iterable[Upstream], now: float = 0.0
    ) -> tuple[list[str], list[str]]:
        """Keep stats of unchanged upstreams, start fresh for new or changed ones.

        A kept upstream whose definition changed in any other way (timeouts, ejection,
        options) loses its 429 pause: the operator changed it. An upstream that vanishes is
        kept aside for RETIRED_KEEP_S: a file written in two steps, or an upstream commented
        out and back, must not lose its ejection or latency. Returns (kept, reset) names.
        """
        fresh: dict[str, UpstreamStats] = {}
        kept: list[str] = []
        reset: list[str] = []
        self._retired = {
            name: (st, at) for name, (st, at) in self._retired.items() if now - at < RETIRED_KEEP_S
        }
        for up in upstreams:
            old = self._by_name.get(up.name)
            if old is None:
                old = self._retired.pop(up.name, (None, now))[0]
            if old is not None and old.fingerprint == up.fingerprint:
                if self._defined.get(up.name, up) != up:
                    old.clear_pause()
                old.ejection = up.ejection
                fresh[up.name] = old
                kept.append(up.name)
            else:
                fresh[up.name] = UpstreamStats(up.name, up.fingerprint, up.ejection, self.sink)
                reset.append(up.name)
            self._defined[up.name] = up
        for name, st in self._by_name.items():
            if name not in fresh:
                self._retired[name] = (st, now)
        self._by_name = fresh
        self._defined = {
            name: up for name, up in self._defined.items() if name in fresh or name in self._retired
        }
        return kept, reset

    def live(self) -> Iterable[UpstreamStats]:
        """The stats of the upstreams of the current snapshot."""
        return self._by_name.values()
