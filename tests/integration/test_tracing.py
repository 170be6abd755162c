"""OpenTelemetry: a request span and one span per attempt, GenAI attributes, traceparent sent."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
from conftest import FakeFactory, GatewayFactory, base_config, upstream
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from proxy.config.values import Tracing
from proxy.fake.behaviour import Behaviour
from proxy.ops.tracing import Tracer

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hello"}]}
CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"


async def test_request_and_attempt_spans(fakes: FakeFactory, gateway: GatewayFactory) -> None:
    a, b = await fakes("a"), await fakes("b")
    a.script(Behaviour(status=500))
    cfg = base_config(
        {"a": upstream(a), "b": upstream(b)}, {"chat": {"tiers": [{"a": 1}, {"b": 1}]}}
    )
    cfg["tracing"] = {"service_name": "gw-test"}
    gw = await gateway(cfg)
    assert gw.server.runner is not None
    memory = InMemorySpanExporter()
    gw.server.runner.gateway.tracer = Tracer(Tracing(service_name="gw-test"), memory)
    headers = {"traceparent": f"00-{CLIENT_TRACE}-b7ad6b7169203331-01"}
    async with (
        aiohttp.ClientSession() as s,
        s.post(gw.url + "/v1/chat/completions", data=orjson.dumps(CHAT), headers=headers) as r,
    ):
        assert r.status == 200
        await r.read()
    spans = {sp.name: sp for sp in memory.get_finished_spans()}
    assert set(spans) == {"chat chat", "chat a", "chat b"}
    root = spans["chat chat"]
    assert root.context is not None
    assert f"{root.context.trace_id:032x}" == CLIENT_TRACE  # the client's trace continues
    attrs: dict[str, Any] = dict(root.attributes or {})
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == "chat"
    assert attrs["gen_ai.response.model"] == "b-model"
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.usage.input_tokens"] > 0 and attrs["http.response.status_code"] == 200
    assert root.resource.attributes["service.name"] == "gw-test"
    root_ctx = root.context
    assert root_ctx is not None
    for name in ("chat a", "chat b"):
        parent = spans[name].parent
        assert parent is not None and parent.span_id == root_ctx.span_id
    assert (spans["chat a"].attributes or {})["error.type"] == "upstream_5xx"
    a_end, b_start = spans["chat a"].end_time, spans["chat b"].start_time
    assert a_end is not None and b_start is not None and a_end <= b_start
    # Each upstream saw the request span as its parent, in the same trace.
    for fake in (a, b):
        sent = fake.requests[-1].header("traceparent")
        assert sent is not None
        assert sent.split("-")[1] == CLIENT_TRACE
        assert sent.split("-")[2] == f"{root_ctx.span_id:016x}"


async def test_no_tracing_section_no_spans(fakes: FakeFactory, gateway: GatewayFactory) -> None:
    a = await fakes("a")
    gw = await gateway(base_config({"a": upstream(a)}, {"chat": {"tiers": [{"a": 1}]}}))
    assert gw.server.tracer is None
    async with (
        aiohttp.ClientSession() as s,
        s.post(gw.url + "/v1/chat/completions", data=orjson.dumps(CHAT)) as r,
    ):
        assert r.status == 200
    assert a.requests[-1].header("traceparent") is None
