"""One owner per attempt: acquire, classify, record, release, close, and log health changes."""

from __future__ import annotations

import random
import time
from types import TracebackType

from proxy.config.values import Upstream
from proxy.core.exchange import Exchange
from proxy.core.failures import PENALIZE, FailureKind
from proxy.ops import logs
from proxy.providers.base import Provider
from proxy.routing.balancer import Choice
from proxy.routing.retryafter import backoff_hint_s
from proxy.routing.send import Reply
from proxy.routing.stats import Transition

DEFAULT_RATE_LIMIT_S = 1.0
"""Pause for an upstream that answered 429 without saying for how long."""


class Attempt:
    """One HTTP exchange with one upstream, from choice to close.

    Every outcome goes through here, before and after the commit point, so the upstream's
    stats are acquired and released exactly once, the reply is released (kept alive) or closed
    exactly once, and every health transition (ejected, recovered) is logged. The winning
    attempt is used as a context manager by whoever relays its answer.
    """

    __slots__ = ("_held", "_rng", "choice", "ex", "provider", "reply", "upstream")

    def __init__(
        self, ex: Exchange, choice: Choice, provider: Provider, rng: random.Random
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
        choice.stats.acquire(time.monotonic())
        self._held = True

    def answered(self, reply: Reply) -> bool:
        """Classify the start of an answer. True: it goes to the client (a success, or a client
        error returned as is). False: a failure, recorded and released; try another upstream."""
        self.reply = reply
        ex, st = self.ex, self.choice.stats
        ex.upstream_status = reply.status
        kind = self.provider.failure(reply.status)
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
            self._log(st.record_success(now))
            return True
        if kind is FailureKind.CLIENT_ERROR:
            st.record_neutral()
            ex.failure = kind
            return True
        if kind is FailureKind.RATE_LIMITED:
            hint = backoff_hint_s(reply.headers, time.time())
            delay = DEFAULT_RATE_LIMIT_S if hint is None else hint
            st.record_rate_limit(time.monotonic(), delay)
            ex.retry_after_s = delay if ex.retry_after_s is None else min(ex.retry_after_s, delay)
        self.failed(kind, f"status {reply.status}", reply.status)
        return False

    def failed(self, kind: FailureKind, detail: str, status: int | None = None) -> None:
        """Before the commit point: record the failure, say so, release everything."""
        ex, st = self.ex, self.choice.stats
        ex.failure = kind
        ex.upstream_status = status
        if kind in PENALIZE:
            self._log(st.record_failure(time.monotonic(), self._rng))
        else:
            st.record_neutral()
        logs.attempt_failed(ex.id, self.upstream.name, kind, detail)
        self.end(close=False)

    def abandon(self) -> None:
        """Cancelled (client gone, drain) or crashed while sending: no health signal."""
        self.choice.stats.record_neutral()
        self.end(close=True)

    def broke(self, kind: FailureKind) -> None:
        """After the commit point: the stream failed; ill health is recorded and logged."""
        self.ex.failure = kind
        if kind in PENALIZE:
            self._log(self.choice.stats.record_failure(time.monotonic(), self._rng))

    def end(self, *, close: bool) -> None:
        """Release the stats and the reply (closing its connection if `close`); idempotent."""
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

    def _log(self, transition: Transition) -> None:
        if transition is not Transition.NONE:
            logs.health(self.upstream.name, transition.value)
