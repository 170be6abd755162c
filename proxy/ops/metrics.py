"""Prometheus series of the gateway, recorded once per request at settle from the exchange."""

from __future__ import annotations

import asyncio
import os
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from proxy.core.exchange import Exchange, Usage
from proxy.core.failures import FailureKind

TTFB_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)
"""Time to first byte of an LLM answer: tens of milliseconds (cached) to a minute (reasoning)."""
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0)
"""A whole request, streams included: a long generation runs for minutes."""
FLUSH_S = 1.0
"""How often recorded increments reach prometheus-client (a scrape flushes first anyway)."""
STATES = ("healthy", "ejected", "probe_pending", "probing", "rate_limited", "drained")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""Set by the supervisor for its workers: each writes its series to files there, and the
scrape (served by worker 0) sums every worker's, so one scrape shows the whole service."""


@dataclass(frozen=True, slots=True)
class UpstreamRow:
    """What the scrape shows of one upstream right now."""

    name: str
    state: str
    inflight: int


@dataclass(frozen=True, slots=True)
class ServiceRow:
    """Process-wide figures read at scrape time."""

    generation: int
    reloads_ok: int
    reloads_failed: int
    loop_lag_s: float
    connections: int = 0
    connections_refused: int = 0
    header_timeouts: int = 0


class Metrics:
    """The series a request feeds, with label children cached so recording stays cheap.

    Every label value is a configured name (route, upstream, key) or a fixed word: a model
    name a client sent that matches no route is recorded as route "" and never becomes a label.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self._requests = Counter(
            "gateway_requests",
            "Client requests by route, answering upstream, status class and stream.",
            ("route", "upstream", "status_class", "stream"),
            registry=r,
        )
        self._duration = Histogram(
            "gateway_request_duration_seconds",
            "Whole request time, arrival to settle (streams included).",
            ("route", "upstream"),
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self._ttfb = Histogram(
            "gateway_upstream_ttfb_seconds",
            "Time to the first byte of the answering upstream.",
            ("upstream",),
            buckets=TTFB_BUCKETS,
            registry=r,
        )
        self._attempts = Counter(
            "gateway_attempts",
            "Attempts by upstream and outcome (answered, or the failure kind).",
            ("upstream", "outcome"),
            registry=r,
        )
        self._failovers = Counter(
            "gateway_failovers",
            "Attempts that failed and were followed by another, by route and failure kind.",
            ("route", "kind"),
            registry=r,
        )
        self._tokens = Counter(
            "gateway_tokens",
            "Tokens by route, virtual key name and direction (in, out).",
            ("route", "key", "direction"),
            registry=r,
        )
        self._cache_tokens = Counter(
            "gateway_cache_tokens",
            "Prompt tokens read from or written to the provider's prompt cache, by route, key "
            "name, upstream and kind (read, write); part of gateway_tokens direction=in.",
            ("route", "key", "upstream", "kind"),
            registry=r,
        )
        self._cost = Counter(
            "gateway_cost_usd", "Cost in USD by route and key name.", ("route", "key"), registry=r
        )
        self._cache = Counter(
            "gateway_cache_lookups",
            "Requests on routes with a response cache, by route and result (hit, miss, skip).",
            ("route", "result"),
            registry=r,
        )
        self._limited = Counter(
            "gateway_rate_limited",
            "429s by who refused (provider: an upstream answered 429; gateway: the gateway did).",
            ("refused_by", "upstream"),
            registry=r,
        )
        shared = os.environ.get(MULTIPROCESS_ENV)
        self.scraped = r
        """What /metrics exposes: this registry, or every worker's series when shared."""
        if shared:
            self.scraped = CollectorRegistry(auto_describe=False)
            MultiProcessCollector(self.scraped, shared)  # type: ignore[no-untyped-call]
        self._counts: dict[tuple[Counter, tuple[str, ...]], float] = {}
        """Increments since the last flush: a dict add on the request path, not a locked
        prometheus-client value (about 1 us each, 2 us for a histogram observation)."""
        self._hists: dict[tuple[Histogram, tuple[str, ...]], list[float]] = {}
        """Per label set: one count per bucket (non-cumulative, as prometheus-client keeps
        them), then the sum of the observations."""

    def _inc(self, metric: Counter, labels: tuple[str, ...], amount: float = 1.0) -> None:
        key = (metric, labels)
        counts = self._counts
        counts[key] = counts.get(key, 0.0) + amount

    def _observe(
        self, metric: Histogram, labels: tuple[str, ...], value: float, bounds: tuple[float, ...]
    ) -> None:
        key = (metric, labels)
        row = self._hists.get(key)
        if row is None:
            row = self._hists[key] = [0.0] * (len(bounds) + 2)
        row[bisect_left(bounds, value)] += 1
        row[-1] += value

    def flush(self) -> None:
        """Move what requests recorded into prometheus-client's values (at each scrape, and
        every second so the other workers' files stay current in multiprocess mode)."""
        counts, self._counts = self._counts, {}
        for (counter, labels), amount in counts.items():
            counter.labels(*labels).inc(amount)
        hists, self._hists = self._hists, {}
        for (hist, hist_labels), row in hists.items():
            child = hist.labels(*hist_labels)
            # Bucket counts added in one go: observe() per value would cost 2 us each. These
            # are prometheus-client's own per-bucket values (pinned version).
            for i, n in enumerate(row[:-1]):
                if n:
                    child._buckets[i].inc(n)
            child._sum.inc(row[-1])

    def record(self, ex: Exchange, now: float) -> None:
        """One settled request: dictionary adds only (a few us), no formatting, no lock."""
        route = ex.route.name if ex.route is not None else ""
        upstream = ex.upstream or ""
        status = ex.status
        stream = "true" if ex.stream else "false"
        inc = self._inc
        inc(self._requests, (route, upstream, _CLASSES.get(status // 100, "5xx"), stream))
        self._observe(self._duration, (route, upstream), now - ex.started, DURATION_BUCKETS)
        if ex.ttfb_s is not None and upstream:
            self._observe(self._ttfb, (upstream,), ex.ttfb_s, TTFB_BUCKETS)
        failed = ex.failed
        if failed:
            for up, kind in failed:
                inc(self._attempts, (up, kind.value))
                if kind is FailureKind.RATE_LIMITED:
                    inc(self._limited, ("provider", up))
            for _up, kind in failed[: ex.attempts - 1]:
                inc(self._failovers, (route, kind.value))
        if ex.attempts > len(failed) and upstream:
            inc(self._attempts, (upstream, "answered"))
        elif status == 429:
            inc(self._limited, ("gateway", ""))
        if ex.cache is not None:
            inc(self._cache, (route, ex.cache))
        usage = ex.usage
        if usage is not None and route and ex.cache != "hit":  # a hit used no upstream tokens
            self._count_usage(ex, usage, route, upstream)

    def _count_usage(self, ex: Exchange, usage: Usage, route: str, upstream: str) -> None:
        """Tokens (prompt-cache reads and writes apart) and cost of an upstream's answer."""
        inc = self._inc
        key = ex.key_name or ""
        inc(self._tokens, (route, key, "in"), usage.tokens_in)
        inc(self._tokens, (route, key, "out"), usage.tokens_out)
        if usage.tokens_cached:
            inc(self._cache_tokens, (route, key, upstream, "read"), usage.tokens_cached)
        if usage.tokens_cache_write:
            inc(self._cache_tokens, (route, key, upstream, "write"), usage.tokens_cache_write)
        if ex.cost_usd:
            inc(self._cost, (route, key), ex.cost_usd)

    def exposition(self) -> bytes:
        self.flush()
        return generate_latest(self.scraped)

    async def flush_every(self, interval_s: float = FLUSH_S) -> None:
        while True:
            await asyncio.sleep(interval_s)
            self.flush()


_CLASSES = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}


class LiveCollector(Collector):
    """Gauges read at scrape time from live state, so the request path never updates them."""

    def __init__(
        self,
        upstreams: Callable[[], Iterable[UpstreamRow]],
        service: Callable[[], ServiceRow],
    ) -> None:
        self._upstreams = upstreams
        self._service = service

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        inflight = GaugeMetricFamily(
            "gateway_upstream_inflight", "Attempts in flight per upstream.", labels=("upstream",)
        )
        state = GaugeMetricFamily(
            "gateway_upstream_state",
            "1 for the state each upstream is in (healthy, ejected, rate_limited, ...), else 0.",
            labels=("upstream", "state"),
        )
        for row in self._upstreams():
            inflight.add_metric((row.name,), row.inflight)
            for s in STATES:
                state.add_metric((row.name, s), 1.0 if s == row.state else 0.0)
        yield inflight
        yield state
        svc = self._service()
        yield GaugeMetricFamily(
            "gateway_config_generation", "Generation of the running config.", value=svc.generation
        )
        reloads = CounterMetricFamily(
            "gateway_config_reloads", "Config reloads by result.", labels=("result",)
        )
        reloads.add_metric(("success",), svc.reloads_ok)
        reloads.add_metric(("failure",), svc.reloads_failed)
        yield reloads
        yield GaugeMetricFamily(
            "gateway_connections_open", "Open client connections.", value=svc.connections
        )
        yield CounterMetricFamily(
            "gateway_connections_refused",
            "Client connections refused at [server] max_connections.",
            value=svc.connections_refused,
        )
        yield CounterMetricFamily(
            "gateway_header_timeouts",
            "Client connections closed for not sending their headers in time (slowloris).",
            value=svc.header_timeouts,
        )
        yield GaugeMetricFamily(
            "gateway_event_loop_lag_seconds",
            "How late the event loop ran a timer, last measured (seconds).",
            value=svc.loop_lag_s,
        )
