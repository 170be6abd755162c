"""The active health-check loop: probes upstreams that declare `health`, on the live snapshot."""

from __future__ import annotations

import asyncio
import random
import time

import aiohttp

from proxy.config.values import Upstream
from proxy.ops import logs
from proxy.providers.probe import probe_target
from proxy.routing.probes import ProbeState
from proxy.routing.stats import StatsRegistry, Transition
from proxy.server.runtime import ConfigStore

TICK_S = 1.0
"""Longest sleep between two looks at the snapshot: a reload's new checks start this soon."""


class HealthChecks:
    """Probe schedule of this process; re-planned from `store.current` at every tick, so a
    reload adds, changes or drops checks without a restart, and an upstream whose fingerprint
    is unchanged keeps its schedule and streak (as its stats do)."""

    __slots__ = ("registry", "rng", "session", "states", "store")

    def __init__(
        self,
        store: ConfigStore,
        registry: StatsRegistry,
        session: aiohttp.ClientSession,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.session = session
        self.rng = rng or random.Random()
        self.states: dict[str, ProbeState] = {}

    def replan(self, now: float) -> list[Upstream]:
        """Bring the schedule in line with the snapshot; return the upstreams due now."""
        checked = {u.name: u for u in self.store.current.upstreams.values() if u.health}
        for name in [n for n in self.states if n not in checked]:
            del self.states[name]
        due: list[Upstream] = []
        for name, up in checked.items():
            assert up.health is not None
            ps = self.states.get(name)
            if ps is None or ps.fingerprint != up.fingerprint or ps.check != up.health:
                ps = self.states[name] = ProbeState(up.fingerprint, up.health, now, self.rng)
            if ps.due(now):
                due.append(up)
        return due

    async def run(self) -> None:
        while True:
            due = self.replan(time.monotonic())
            if due:
                await asyncio.gather(*(self.probe(up) for up in due))
            await asyncio.sleep(self.sleep_s(time.monotonic()))

    def report(self, now: float) -> dict[str, dict[str, object]]:
        """Per checked upstream: probes sent, the last result, the failed streak, next probe."""
        return {
            name: {
                "probes": ps.probes,
                "last_ok": ps.last_ok,
                "failed_streak": ps.failures,
                "next_in_s": round(max(ps.next_at - now, 0.0), 1),
            }
            for name, ps in self.states.items()
        }

    def sleep_s(self, now: float) -> float:
        soonest = min((ps.next_at for ps in self.states.values()), default=now + TICK_S)
        return min(max(soonest - now, 0.01), TICK_S)

    async def probe(self, up: Upstream) -> None:
        check = up.health
        assert check is not None
        url, headers = probe_target(up, check.path)
        status: int | None = None
        error: str | None = None
        try:
            async with asyncio.timeout(check.timeout_s):
                async with self.session.get(url, headers=headers, allow_redirects=False) as r:
                    status = r.status
                    await r.read()
        except TimeoutError:
            error = "timeout"
        except (aiohttp.ClientError, OSError) as exc:
            error = type(exc).__name__
        now = time.monotonic()
        ps = self.states.get(up.name)
        if ps is None or ps.fingerprint != up.fingerprint:
            return  # the upstream changed while the probe ran: its result says nothing
        # A 429 says the upstream is up (and rate limits are the passive path's business).
        ok = status is not None and (status < 300 or status == 429)
        st = self.registry.current().get(up.name)
        ps.plan(now, self.rng)
        if st is None or st.fingerprint != up.fingerprint:
            return
        change = ps.record(ok, st, now, self.rng)
        if not ok:
            logs.warning(
                "health_probe_failed",
                upstream=up.name,
                status=status,
                error=error,
                streak=ps.failures,
            )
        if change is Transition.EJECTED:
            logs.warning("upstream_ejected", upstream=up.name, by="health_check")
        elif change is Transition.RECOVERED:
            logs.event("upstream_recovered", upstream=up.name, by="health_check")
