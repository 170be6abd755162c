"""Tests for proxy.transport.headers: the allow-list toward upstreams, response headers, request ids."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from proxy.config.compiler import compile_data
from proxy.config.values import Endpoint, Upstream
from proxy.core.exchange import Exchange
from proxy.providers.openai import OpenAI
from proxy.providers.openai_body import peek
from proxy.transport.headers import (
    FORWARDED_REQUEST_HEADERS,
    forward_headers,
    passed_response_headers,
    valid_request_id,
)

SECRET = "sk-upstream-secret-0001"
HOP_BY_HOP = [
    "Connection",
    "Keep-Alive",
    "TE",
    "Trailer",
    "Transfer-Encoding",
    "Upgrade",
    "Proxy-Authorization",
    "Proxy-Connection",
]
CLIENT_CREDENTIALS = ["Authorization", "x-api-key", "api-key", "x-goog-api-key", "Cookie"]
GATEWAY_OWNED = {"content-type", "accept-encoding", "x-request-id", "authorization"}


def upstream(credential: str | None) -> Upstream:
    raw: dict[str, Any] = {"base_url": "https://api.example.com/v1"}
    env: dict[str, str] = {}
    if credential is not None:
        raw["credential"] = "env:UP_KEY"
        env["UP_KEY"] = credential
    data: dict[str, Any] = {"upstreams": {"u": raw}, "routes": {"r": {"tiers": [{"u": 1}]}}}
    return compile_data(data, env).upstreams["u"]


def upstream_headers(client: Any, up: Upstream, request_id: str) -> dict[str, str]:
    """What one attempt sends: the headers every attempt carries, then the OpenAI provider's."""
    data: dict[str, Any] = {
        "upstreams": {"u": {"base_url": up.base_url}},
        "routes": {"r": {"tiers": [{"u": 1}]}},
    }
    body = b'{"model": "r"}'
    ex = Exchange(
        id=request_id,
        endpoint=Endpoint.CHAT,
        snap=compile_data(data, {}),
        started=0.0,
        client_headers=client,
        body=body,
        peek=peek(body),
        forward_headers=forward_headers(client, request_id),
    )
    return OpenAI().request(up, ex).headers


def lower_keys(headers: dict[str, str]) -> set[str]:
    return {k.lower() for k in headers}


def lowered(headers: dict[str, str]) -> dict[str, str]:
    lower = {k.lower(): v for k, v in headers.items()}
    assert len(lower) == len(headers), "a header name appears twice in different cases"
    return lower


def request(pairs: list[tuple[str, str]] | dict[str, str]) -> CIMultiDictProxy[str]:
    """Client headers as aiohttp hands them over: a case-insensitive multidict."""
    return CIMultiDictProxy(CIMultiDict(pairs))


def test_allowed_headers_pass_and_gateway_headers_are_set() -> None:
    client = {
        "Accept": "text/event-stream",
        "User-Agent": "OpenAI/Python 1.0",
        "OpenAI-Beta": "assistants=v2",
        "Authorization": "Bearer gw-client-key",
        "Content-Type": "text/plain",
        "Accept-Encoding": "gzip, br",
        "X-Request-Id": "client-chosen",
        "Host": "evil.example",
        "Content-Length": "5",
    }
    out = upstream_headers(request(client), upstream(SECRET), "req-123")
    assert lowered(out) == {
        "accept": "text/event-stream",
        "user-agent": "OpenAI/Python 1.0",
        "openai-beta": "assistants=v2",
        "content-type": "application/json",
        "accept-encoding": "identity",
        "x-request-id": "req-123",
        "authorization": "Bearer " + SECRET,
    }


def test_names_match_in_any_case() -> None:
    pairs = [("ACCEPT", "application/json"), ("x-api-key", "client"), ("cookie", "a=b")]
    out = upstream_headers(request(pairs), upstream(None), "r1")
    assert lowered(out) == {
        "accept": "application/json",
        "content-type": "application/json",
        "accept-encoding": "identity",
        "x-request-id": "r1",
    }


@pytest.mark.parametrize("name", HOP_BY_HOP + CLIENT_CREDENTIALS)
def test_hop_by_hop_and_credentials_dropped(name: str) -> None:
    for variant in (name, name.lower(), name.upper()):
        out = upstream_headers(request([(variant, "v")]), upstream(None), "r")
        assert "v" not in out.values()
        assert "authorization" not in lower_keys(out)


def test_no_upstream_credential_means_no_authorization() -> None:
    out = upstream_headers(request({"Authorization": "Bearer client"}), upstream(None), "r")
    assert "authorization" not in lower_keys(out)


def test_connection_nominated_header_dropped() -> None:
    client = {"Connection": "X-Secret-Thing", "X-Secret-Thing": "1", "Accept": "*/*"}
    out = upstream_headers(request(client), upstream(None), "r")
    assert "x-secret-thing" not in lower_keys(out)
    assert lowered(out)["accept"] == "*/*"


header_names = st.sampled_from(
    HOP_BY_HOP + CLIENT_CREDENTIALS + ["Accept", "User-Agent", "OpenAI-Beta"]
).flatmap(lambda n: st.sampled_from([n, n.lower(), n.upper(), n.swapcase()])) | st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=1
)
header_values = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=20
)


@settings(max_examples=150)
@given(
    st.lists(st.tuples(header_names, header_values), max_size=15),
    st.booleans(),
    st.sampled_from(["req-1", "abc"]),
)
def test_only_allow_listed_headers_pass(
    client: list[tuple[str, str]], with_credential: bool, request_id: str
) -> None:
    up = upstream(SECRET if with_credential else None)
    out = lowered(upstream_headers(request(client), up, request_id))
    assert set(out) <= FORWARDED_REQUEST_HEADERS | GATEWAY_OWNED
    for name in HOP_BY_HOP + CLIENT_CREDENTIALS[1:]:
        assert name.lower() not in out
    assert out.get("authorization") == ("Bearer " + SECRET if with_credential else None)
    assert out["x-request-id"] == request_id
    assert out["content-type"] == "application/json"
    assert out["accept-encoding"] == "identity"
    sent: dict[str, set[str]] = {}
    for k, v in client:
        sent.setdefault(k.lower(), set()).add(v)
    for name in FORWARDED_REQUEST_HEADERS:
        if name in sent:
            assert out[name] in sent[name]
        else:
            assert name not in out


# --- response headers ------------------------------------------------------------------------------


def test_passed_response_headers() -> None:
    upstream_resp = CIMultiDictProxy(
        CIMultiDict(
            {
                "Openai-Processing-Ms": "123",
                "openai-version": "2020-10-01",
                "X-Request-Id": "req_up_1",
                "x-ratelimit-remaining-requests": "99",
                "Transfer-Encoding": "chunked",
                "Set-Cookie": "__cf_bm=secret",
                "Content-Length": "10",
            }
        )
    )
    assert lowered(passed_response_headers(upstream_resp)) == {
        "openai-processing-ms": "123",
        "openai-version": "2020-10-01",
        "x-upstream-request-id": "req_up_1",
    }


def test_passed_response_headers_without_request_id() -> None:
    assert passed_response_headers(CIMultiDictProxy(CIMultiDict({"Server": "x"}))) == {}


# --- request id ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (None, False),
        ("", False),
        ("a", True),
        ("req_0123-abcd.EF:~!", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("has space", False),
        ("tab\there", False),
        ("new\nline", False),
        ("café", False),
        ("\x7f", False),
    ],
)
def test_valid_request_id(value: str | None, ok: bool) -> None:
    assert valid_request_id(value) is ok


@given(st.text(max_size=140))
def test_valid_request_id_property(value: str) -> None:
    expected = 1 <= len(value) <= 128 and all("!" <= ch <= "~" for ch in value)
    assert valid_request_id(value) is expected
