"""One owner per attempt: acquire, classify, record, release, close, and log health changes."""

from __future__ import annotations

import random
import time
from types import TracebackType

from proxy.config.values import Upstream
from proxy.core.exchange import Exchange, Step
from proxy.core.failures import PENALIZE, FailureKind
from proxy.ops import logs
from proxy.providers.base import Provider
from proxy.routing.balancer import Choice
from proxy.routing.capacity import limited
from proxy.routing.retryafter import backoff_hint_s
from proxy.routing.send import Reply
from proxy.routing.stats import Transition

DEFAULT_RATE_LIMIT_S = 1.0
"""Pause for an upstream that answered 429 without saying for how long."""
_ASKED_CAP_S = 10.0 * 365 * 86400
"""How long a 429 may ask for, as read (then capped by max_rate_limit_pause_s); a later date
counts as this, so the log line still says it was out of range."""


class Attempt:
    """One HTTP exchange with one upstream, from choice to close.

    Every outcome goes through here, before and after the commit point, so the upstream's
    stats are acquired and released exactly once, the reply is released (kept alive) or closed
    exactly once, and every health transition (ejected, recovered) is logged. The winning
    attempt is used as a context manager by whoever relays its answer.
    """

    __slots__ = (
        "_held",
        "_limit_probe",
        "_rng",
        "choice",
        "ex",
        "provider",
        "reply",
        "step",
        "upstream",
    )

    def __init__(
        self,
        ex: Exchange,
        choice: Choice,
        provider: Provider,
        rng: random.Random,
        tokens: int = 0,
    ) -> None:
        up = choice.member.upstream
        self.ex = ex
        self.choice = choice
        self.provider = provider
        self.upstream: Upstream = up
        self.reply: Reply | None = None
        self._rng = rng
        ex.tried.append(up.name)
        ex.attempts += 1
        ex.upstream = up.name
        now = time.monotonic()
        self.step = Step(up.name, choice.tier_index, now - ex.started)
        ex.steps.append(self.step)
        choice.stats.acquire(now)
        self._limit_probe = choice.stats.take_limit_probe(now)
        if limited(up):
            choice.stats.capacity.spend(tokens, now)
        self._held = True

    def answered(self, reply: Reply) -> bool:
        """Classify the start of an answer. True: it goes to the client (a success, or a client
        error returned as is). False: a failure, recorded and released; try another upstream."""
        self.reply = reply
        ex, st = self.ex, self.choice.stats
        ex.upstream_status = reply.status
        self._outcome(str(reply.status))
        kind = self.provider.failure(reply.status)
        if limited(self.upstream):
            st.capacity.observe(reply.headers, time.monotonic())
        if kind is None and ex.stream:
            status = self.provider.stream_status(reply.first)
            if status is not None:  # a 200 stream that opens with an error event
                self.reply = None
                reply.close()  # its body was not read to the end: the connection cannot be reused
                kind = self.provider.failure(status) or FailureKind.UPSTREAM_5XX
                self.failed(kind, f"stream opened with an error event ({status})", status)
                return False
        if kind is None:
            now = time.monotonic()
            ex.ttfb_s = reply.ttfb_s
            st.record_ttfb(reply.ttfb_s, now)
            self._log(st.record_success(now), None)
            self._limit_probe_done()
            return True
        if kind is FailureKind.CLIENT_ERROR:
            st.record_neutral()
            ex.failure = kind
            self._limit_probe_done()
            return True
        detail = f"status {reply.status}"
        if kind is FailureKind.RATE_LIMITED:
            asked = backoff_hint_s(reply.headers, time.time(), _ASKED_CAP_S)
            cap = ex.snap.max_rate_limit_pause_s
            delay = min(DEFAULT_RATE_LIMIT_S if asked is None else asked, cap)
            st.record_rate_limit(time.monotonic(), delay)
            ex.retry_after_s = delay if ex.retry_after_s is None else min(ex.retry_after_s, delay)
            if asked is not None and asked > cap:
                detail += f", paused {cap:g}s (max_rate_limit_pause_s), asked {asked:g}s"
        self.failed(kind, detail, reply.status)
        return False

    def failed(self, kind: FailureKind, detail: str, status: int | None = None) -> None:
        """Before the commit point: record the failure, say so, release everything."""
        ex, st = self.ex, self.choice.stats
        ex.failure = kind
        ex.upstream_status = status
        ex.failed.append((self.upstream.name, kind))
        self._outcome(kind.value)
        if kind in PENALIZE:
            self._log(st.record_failure(time.monotonic(), self._rng, kind), kind)
        else:
            st.record_neutral()
        logs.attempt_failed(ex.id, self.upstream.name, kind, detail)
        self.end(close=False)

    def abandon(self) -> None:
        """Cancelled (client gone, drain) or crashed while sending: no health signal."""
        self.choice.stats.record_neutral()
        if self.step.outcome == "pending":
            self._outcome("abandoned")
        if self._limit_probe:
            self._limit_probe = False
            self.choice.stats.drop_limit_probe()
        self.end(close=True)

    def broke(self, kind: FailureKind) -> None:
        """After the commit point: the stream failed; ill health is recorded and logged."""
        self.ex.failure = kind
        if kind in PENALIZE:
            self._log(self.choice.stats.record_failure(time.monotonic(), self._rng, kind), kind)

    def end(self, *, close: bool) -> None:
        """Release the stats and the reply (closing its connection if `close`); idempotent."""
        self._limit_probe_done()
        if self._held:
            self._held = False
            self.choice.stats.release()
        reply = self.reply
        if reply is not None:
            self.reply = None
            if close:
                reply.close()
            else:
                reply.release()

    def __enter__(self) -> Attempt:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.end(close=exc_type is not None)

    def _log(self, transition: Transition, kind: FailureKind | None) -> None:
        if transition is Transition.NONE:
            return
        st = self.choice.stats
        if transition is Transition.EJECTED:
            logs.health(
                self.upstream.name,
                transition.value,
                duration_s=round(st.last_ejection_s, 2),
                streak=st.failures,
                failure=kind,
                ejections=st.ejections,
                request_id=self.ex.id,
            )
        else:
            down = time.monotonic() - st.ejected_at
            logs.health(self.upstream.name, transition.value, down_s=round(down, 2))

    def _outcome(self, outcome: str) -> None:
        step = self.step
        step.outcome = outcome
        step.took_s = time.monotonic() - self.ex.started - step.at_s

    def _limit_probe_done(self) -> None:
        """The answer of the probe after a 429 pause has started (or it failed): selection may
        use the upstream again, unless the answer was another 429."""
        if self._limit_probe:
            self._limit_probe = False
            self.choice.stats.end_limit_probe(time.monotonic())
