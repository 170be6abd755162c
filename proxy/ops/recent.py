"""The routing traces of the last N requests, by request id, for `GET /admin/requests/ID`."""

from __future__ import annotations

from proxy.core.exchange import Exchange
from proxy.ops.explain import Trace

KEEP = 1000


class RecentTraces:
    """A bounded map of request id to its trace document; the oldest is forgotten first.

    Recording keeps the exchange's small parts only (no body); the document is built when
    asked for, so a request costs one small object and a dict insert."""

    __slots__ = ("_keep", "_traces")

    def __init__(self, keep: int = KEEP) -> None:
        self._keep = keep
        self._traces: dict[str, Trace] = {}

    def record(self, ex: Exchange, duration_s: float) -> None:
        traces = self._traces
        traces.pop(ex.id, None)
        traces[ex.id] = Trace.of(ex, duration_s)
        if len(traces) > self._keep:
            del traces[next(iter(traces))]

    def get(self, request_id: str) -> dict[str, object] | None:
        trace = self._traces.get(request_id)
        return None if trace is None else trace.document()
