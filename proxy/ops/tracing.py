"""OpenTelemetry spans: one per request and one per attempt, GenAI attributes, W3C traceparent."""

from __future__ import annotations

from typing import Any

from proxy.config.values import Endpoint, Tracing
from proxy.core.exchange import Exchange

OPERATIONS = {
    Endpoint.CHAT: "chat",
    Endpoint.COMPLETIONS: "text_completion",
    Endpoint.EMBEDDINGS: "embeddings",
}
"""`gen_ai.operation.name` per endpoint (OpenTelemetry GenAI semantic conventions)."""
_NS = 1_000_000_000


class TracingUnavailable(Exception):
    """[tracing] is configured but the `otel` extra is not installed."""


class Tracer:
    """Spans are opened at arrival (so upstreams get a `traceparent`) and written at settle,
    attempts with the times the exchange recorded: nothing is added to the relay path."""

    def __init__(self, cfg: Tracing, exporter: Any = None) -> None:
        try:
            from opentelemetry.propagators.textmap import DefaultGetter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
            from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
            from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context
            from opentelemetry.trace.propagation.tracecontext import (
                TraceContextTextMapPropagator,
            )
        except ImportError:
            raise TracingUnavailable(
                "[tracing] needs the otel extra: pip install 'llm-gateway[otel]'"
            ) from None
        ratio = min(1.0, cfg.sample_ratio)
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": cfg.service_name}),
            sampler=ParentBased(TraceIdRatioBased(ratio)),
        )
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(cfg.endpoint)))
        else:
            self.provider.add_span_processor(SimpleSpanProcessor(exporter))
        self._tracer = self.provider.get_tracer("llm-gateway")
        self._propagator = TraceContextTextMapPropagator()
        self._getter = DefaultGetter()
        self._server = SpanKind.SERVER
        self._client = SpanKind.CLIENT
        self._in_context = set_span_in_context
        self._error = Status(StatusCode.ERROR)

    def begin(self, ex: Exchange) -> None:
        """The request span, child of the client's `traceparent` when it sent one."""
        parent = None
        if "traceparent" in ex.client_headers:
            carrier = {"traceparent": ex.client_headers["traceparent"]}
            parent = self._propagator.extract(carrier)
        ex.span = self._tracer.start_span(
            OPERATIONS[ex.endpoint],
            context=parent,
            kind=self._server,
            start_time=int(ex.wall_started * _NS),
        )

    def inject(self, ex: Exchange) -> None:
        """Upstreams see the request span as their parent (`traceparent`, W3C)."""
        span: Any = ex.span
        if span is None or not span.get_span_context().is_valid:
            return
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier, context=self._in_context(span))
        ex.forward_headers.update(carrier)

    def end(self, ex: Exchange, now_wall: float) -> None:
        span: Any = ex.span
        if span is None:
            return
        ex.span = None
        op = OPERATIONS[ex.endpoint]
        route = ex.route.name if ex.route is not None else None
        if route is not None:
            span.update_name(f"{op} {route}")
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": op,
            "http.response.status_code": ex.status,
            "gateway.request_id": ex.id,
            "gateway.attempts": ex.attempts,
        }
        if route is not None:
            attrs["gen_ai.request.model"] = route
        if ex.upstream is not None and ex.route is not None:
            up = ex.snap.upstreams.get(ex.upstream)
            if up is not None:
                attrs["gen_ai.provider.name"] = up.provider.value
                attrs["gateway.upstream"] = up.name
                if up.model is not None:
                    attrs["gen_ai.response.model"] = up.model
        if ex.usage is not None:
            attrs["gen_ai.usage.input_tokens"] = ex.usage.tokens_in
            attrs["gen_ai.usage.output_tokens"] = ex.usage.tokens_out
        if ex.error_code is not None:
            attrs["error.type"] = ex.error_code
        span.set_attributes(attrs)
        if ex.status >= 500:
            span.set_status(self._error)
        ctx = self._in_context(span)
        for step in ex.steps:
            start = ex.wall_started + step.at_s
            attempt = self._tracer.start_span(
                f"{op} {step.upstream}",
                context=ctx,
                kind=self._client,
                start_time=int(start * _NS),
            )
            attempt.set_attributes(
                {
                    "gen_ai.operation.name": op,
                    "gateway.upstream": step.upstream,
                    "gateway.tier": step.tier,
                    "gateway.outcome": step.outcome,
                }
            )
            if not step.outcome.isdigit() or int(step.outcome) >= 500:
                attempt.set_attribute("error.type", step.outcome)
                attempt.set_status(self._error)
            attempt.end(end_time=int((start + step.took_s) * _NS))
        span.end(end_time=int(now_wall * _NS))

    def shutdown(self) -> None:
        """Flush what is batched (blocking: call it off the event loop)."""
        self.provider.shutdown()
