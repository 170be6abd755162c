"""Tests for proxy.providers.openai and .catalog: the OpenAI dialect behind the provider seam."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from proxy.config.compiler import compile_data
from proxy.config.values import Config, Endpoint, Provider
from proxy.core.exchange import Exchange, Usage
from proxy.core.failures import FailureKind
from proxy.providers.catalog import PROVIDERS
from proxy.providers.openai import OpenAI, UsageObserver, UsageStripper
from proxy.providers.openai_body import peek
from proxy.transport.headers import forward_headers

SECRET = "sk-test-secret-42"
USAGE_EVENT = b'data: {"id":"x","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}\n\n'
CONTENT_EVENT = b'data: {"id":"x","choices":[{"delta":{"content":"hi"}}]}\n\n'


def config(**upstream: object) -> Config:
    data: dict[str, Any] = {
        "upstreams": {"u": {"base_url": "https://api.example.com/v1/", **upstream}},
        "routes": {"chat": {"tiers": [{"u": 1}]}},
    }
    return compile_data(data, {"KEY": SECRET})


def exchange(cfg: Config, body: dict[str, Any], endpoint: Endpoint = Endpoint.CHAT) -> Exchange:
    raw = orjson.dumps(body)
    headers = CIMultiDictProxy(CIMultiDict({"Authorization": "Bearer client-key"}))
    return Exchange(
        id="r1",
        endpoint=endpoint,
        snap=cfg,
        started=0.0,
        client_headers=headers,
        body=raw,
        peek=peek(raw),
        route=cfg.routes["chat"],
        forward_headers=forward_headers(headers, "r1"),
    )


def test_every_provider_name_has_an_adapter() -> None:
    assert set(PROVIDERS) == set(Provider)
    assert all(PROVIDERS[p].name == p.value for p in Provider)


@pytest.mark.parametrize(
    ("endpoint", "path"),
    [
        (Endpoint.CHAT, "/chat/completions"),
        (Endpoint.COMPLETIONS, "/completions"),
        (Endpoint.EMBEDDINGS, "/embeddings"),
    ],
)
def test_url_is_base_plus_path_then_the_base_query(endpoint: Endpoint, path: str) -> None:
    cfg = config()
    req = OpenAI().request(cfg.upstreams["u"], exchange(cfg, {"model": "chat"}, endpoint))
    assert req.url == "https://api.example.com/v1" + path
    cfg = config(base_url="https://gw.example.com/openai/v1?api-version=2024-10-21&x=1")
    req = OpenAI().request(cfg.upstreams["u"], exchange(cfg, {"model": "chat"}, endpoint))
    assert req.url == f"https://gw.example.com/openai/v1{path}?api-version=2024-10-21&x=1"


def test_credential_goes_in_a_bearer_header_and_the_client_key_never_does() -> None:
    cfg = config(credential="env:KEY")
    req = OpenAI().request(cfg.upstreams["u"], exchange(cfg, {"model": "chat"}))
    assert req.headers["Authorization"] == "Bearer " + SECRET
    assert "client-key" not in repr(req.headers)


def test_forwarded_headers_are_not_mutated_per_attempt() -> None:
    cfg = config(credential="env:KEY")
    ex = exchange(cfg, {"model": "chat"})
    OpenAI().request(cfg.upstreams["u"], ex)
    assert "Authorization" not in ex.forward_headers


def test_model_is_rewritten_and_usage_asked_for_on_streams_only() -> None:
    cfg = config(model="gpt-x")
    up = cfg.upstreams["u"]
    plain = OpenAI().request(up, exchange(cfg, {"model": "chat"}))
    assert orjson.loads(bytes(plain.body)) == {"model": "gpt-x"}
    stream = OpenAI().request(up, exchange(cfg, {"model": "chat", "stream": True}))
    assert orjson.loads(bytes(stream.body)) == {
        "model": "gpt-x",
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_bodies_are_built_once_per_model_and_option() -> None:
    cfg = config(model="gpt-x")
    ex = exchange(cfg, {"model": "chat", "stream": True})
    first = OpenAI().request(cfg.upstreams["u"], ex).body
    again = OpenAI().request(cfg.upstreams["u"], ex).body
    assert first is again


def test_without_a_model_id_the_clients_bytes_go_unchanged() -> None:
    cfg = config()
    ex = exchange(cfg, {"model": "chat", "messages": []})
    assert OpenAI().request(cfg.upstreams["u"], ex).body is ex.body


def test_failure_and_usage_of_a_whole_answer() -> None:
    openai = OpenAI()
    assert openai.failure(200) is None
    assert openai.failure(529) is FailureKind.UPSTREAM_5XX
    assert openai.failure(429) is FailureKind.RATE_LIMITED
    body = b'{"usage": {"prompt_tokens": 4, "completion_tokens": 1}}'
    assert openai.usage(body) == Usage(4, 1)


def test_stream_filter_strips_only_what_the_gateway_asked_for() -> None:
    cfg = config()
    up = cfg.upstreams["u"]
    asked = exchange(cfg, {"model": "chat", "stream": True})
    assert isinstance(OpenAI().stream(up, asked), UsageStripper)
    own = exchange(
        cfg, {"model": "chat", "stream": True, "stream_options": {"include_usage": True}}
    )
    assert isinstance(OpenAI().stream(up, own), UsageObserver)
    off = config(stream_usage=False)
    plain = exchange(off, {"model": "chat", "stream": True})
    assert isinstance(OpenAI().stream(off.upstreams["u"], plain), UsageObserver)


def test_observer_passes_bytes_unchanged_and_notes_usage() -> None:
    filt = UsageObserver()
    assert filt.chunk(CONTENT_EVENT) is CONTENT_EVENT
    assert filt.chunk(USAGE_EVENT) is USAGE_EVENT
    assert filt.usage == Usage(7, 3) and filt.end() == b""


def test_stripper_holds_partial_events_and_drops_the_usage_event() -> None:
    filt = UsageStripper()
    stream = CONTENT_EVENT + USAGE_EVENT + b"data: [DONE]\n\n"
    out = b"".join(filt.chunk(stream[i : i + 9]) for i in range(0, len(stream), 9)) + filt.end()
    assert out == CONTENT_EVENT + b"data: [DONE]\n\n"
    assert filt.usage == Usage(7, 3)


def test_stripper_gives_back_an_unfinished_tail_at_the_end() -> None:
    filt = UsageStripper()
    assert filt.chunk(CONTENT_EVENT + b"data: {") == CONTENT_EVENT
    assert filt.end() == b"data: {"


def test_azure_url_and_api_key_header() -> None:
    cfg = compile_data(
        {
            "upstreams": {
                "u": {
                    "provider": "azure",
                    "base_url": "https://res.openai.azure.com/",
                    "deployment": "gpt4o prod",
                    "api_version": "2024-10-21",
                    "credential": "env:KEY",
                }
            },
            "routes": {"chat": {"tiers": [{"u": 1}]}},
        },
        {"KEY": SECRET},
    )
    up = cfg.upstreams["u"]
    for endpoint, tail in [
        (Endpoint.CHAT, "/chat/completions"),
        (Endpoint.EMBEDDINGS, "/embeddings"),
    ]:
        ex = exchange(cfg, {"model": "chat", "input": "x", "messages": []}, endpoint)
        req = PROVIDERS[Provider.AZURE].request(up, ex)
        assert req.url == (
            f"https://res.openai.azure.com/openai/deployments/gpt4o%20prod{tail}?api-version=2024-10-21"
        )
        assert req.headers["api-key"] == SECRET
        assert "Authorization" not in req.headers
