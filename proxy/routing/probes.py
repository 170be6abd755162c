"""Active health checks, pure: when each upstream is probed next, what a probe result does."""

from __future__ import annotations

import random

from proxy.config.healthcheck import HealthCheck
from proxy.routing.stats import Transition, UpstreamStats


class ProbeState:
    """One upstream's probe schedule and streak; kept while its fingerprint and check are."""

    __slots__ = ("check", "failures", "fingerprint", "last_ok", "next_at", "probes")

    def __init__(self, fingerprint: str, check: HealthCheck, now: float, rng: random.Random):
        self.fingerprint = fingerprint
        self.check = check
        self.failures = 0
        self.probes = 0
        self.last_ok: bool | None = None
        # The first probe at a random point of the first interval: a fleet started together
        # (or a reload adding many checks) does not probe in one burst.
        self.next_at = now + check.every_s * rng.random()

    def due(self, now: float) -> bool:
        return self.next_at <= now

    def plan(self, now: float, rng: random.Random) -> None:
        """The next probe: `every_s` x (1 +- jitter) from now."""
        spread = self.check.jitter * (2.0 * rng.random() - 1.0)
        self.next_at = now + self.check.every_s * (1.0 + spread)

    def record(self, ok: bool, st: UpstreamStats, now: float, rng: random.Random) -> Transition:
        """Apply one probe result to the upstream's selection state.

        A success ends an ejection at once (passive or active), not a 429 pause nor a drain
        (the provider or the operator asked for those). `failures` failed probes in a row
        eject the upstream with its ejection policy, unless it is ejected already; the passive
        failure streak of real requests is not touched (each signal keeps its own count).
        """
        self.probes += 1
        self.last_ok = ok
        if ok:
            self.failures = 0
            if st.ejected_until != 0.0:
                return st.record_success(now)
            return Transition.NONE
        self.failures += 1
        if self.failures >= self.check.failures and st.ejected_until <= now:
            st.eject(now, rng)
            return Transition.EJECTED
        return Transition.NONE
