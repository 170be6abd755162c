"""Tests for proxy.ops.access and the log set-up: one access line per exchange, same processors."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from proxy.config.compiler import compile_data
from proxy.config.values import Endpoint
from proxy.core.exchange import Exchange, Peek, Usage
from proxy.core.failures import FailureKind
from proxy.ops import access, logs


def exchange() -> Exchange:
    data: dict[str, Any] = {
        "upstreams": {"u": {"base_url": "http://127.0.0.1:9/v1"}},
        "routes": {"chat": {"tiers": [{"u": 1}]}},
    }
    cfg = compile_data(data, {})
    return Exchange(
        id="req-1",
        endpoint=Endpoint.CHAT,
        snap=cfg,
        started=time.monotonic() - 0.25,
        client_headers={"User-Agent": "OpenAI/Python 1.0"},
        path="/v1/chat/completions",
        client="127.0.0.1",
        peek=Peek(model="chat", stream=False, include_usage=False, has_stream_options=False),
        route=cfg.routes["chat"],
    )


def lines(capfd: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    logs.flush()
    return [orjson.loads(x) for x in capfd.readouterr().out.splitlines() if x.startswith("{")]


@pytest.fixture(autouse=True)
def _plain_logs() -> Any:
    yield
    logs.configure("info")


def test_the_access_line_says_what_the_request_went_through(
    capfd: pytest.CaptureFixture[str],
) -> None:
    logs.configure("info")
    ex = exchange()
    ex.attempts, ex.upstream, ex.status = 2, "u", 200
    ex.failure = FailureKind.CONNECT
    ex.ttfb_s = 0.01234
    ex.usage = Usage(11, 4)
    ex.key_name, ex.team, ex.cost_usd = "alice", "search", 0.0012
    ex.hedge = "won"
    ex.cache = "miss"
    access.write(ex)
    (line,) = lines(capfd)
    assert line["event"] == "access" and line["level"] == "info"
    assert line["timestamp"].endswith("Z") and line["timestamp"][10] == "T"
    assert {k: line[k] for k in line if k not in ("timestamp", "duration_ms")} == {
        "event": "access",
        "level": "info",
        "request_id": "req-1",
        "method": "POST",
        "path": "/v1/chat/completions",
        "client": "127.0.0.1",
        "user_agent": "OpenAI/Python 1.0",
        "endpoint": "chat",
        "model": "chat",
        "stream": False,
        "route": "chat",
        "arm": None,
        "status": 200,
        "error": None,
        "upstream": "u",
        "attempts": 2,
        "failure": "connect",
        "ttfb_ms": 12.34,
        "tokens_in": 11,
        "tokens_out": 4,
        "key": "alice",
        "team": "search",
        "cost_usd": 0.0012,
        "hedge": "won",
        "cache": "miss",
    }
    assert line["duration_ms"] >= 250


def test_access_lines_pass_the_same_processors_as_other_events(
    capfd: pytest.CaptureFixture[str],
) -> None:
    logs.configure("info", worker="3")
    access.write(exchange())
    logs.event("hello")
    access_line, other = lines(capfd)
    assert access_line["worker"] == other["worker"] == "3"
    assert set(other) <= set(access_line) | {"event"}


def test_no_access_line_below_info(capfd: pytest.CaptureFixture[str]) -> None:
    logs.configure("warning")
    ex = exchange()
    ex.status = 200
    access.write(ex)
    assert lines(capfd) == []


def test_a_5xx_or_a_broken_stream_is_a_warning_and_survives_a_warning_filter(
    capfd: pytest.CaptureFixture[str],
) -> None:
    logs.configure("warning")
    ex = exchange()
    ex.status, ex.error_code = 502, "upstream_error"
    access.write(ex)
    broken = exchange()
    broken.status, broken.error_code = 200, "upstream_timeout"  # committed, then ended
    access.write(broken)
    fine = exchange()
    fine.status = 200
    access.write(fine)
    assert [(x["level"], x["status"], x["error"]) for x in lines(capfd)] == [
        ("warning", 502, "upstream_error"),
        ("warning", 200, "upstream_timeout"),
    ]


def test_an_unknown_model_is_logged_as_asked_and_long_client_strings_are_cut(
    capfd: pytest.CaptureFixture[str],
) -> None:
    logs.configure("info")
    ex = exchange()
    ex.route, ex.status, ex.error_code = None, 404, "model_not_found"
    ex.peek = Peek(model="x" * 500, stream=True, include_usage=False, has_stream_options=False)
    ex.client_headers = {"User-Agent": "u" * 300}
    access.write(ex)
    (line,) = lines(capfd)
    assert line["route"] is None and line["error"] == "model_not_found"
    assert line["model"] == "x" * access.SHOWN_CHARS + "..."
    assert line["user_agent"] == "u" * access.SHOWN_CHARS + "..."
    assert line["level"] == "info"


def test_the_gateways_own_answers_have_an_access_line(capfd: pytest.CaptureFixture[str]) -> None:
    logs.configure("info")
    access.write_plain(
        access.PlainAnswer(
            request_id="r2",
            method="DELETE",
            path="/v1/nope",
            client="::1",
            user_agent=None,
            endpoint=None,
            status=404,
            error_code="not_found",
            started=time.monotonic(),
        )
    )
    (line,) = lines(capfd)
    assert (line["request_id"], line["method"], line["path"], line["status"]) == (
        "r2",
        "DELETE",
        "/v1/nope",
        404,
    )
    assert line["error"] == "not_found" and line["level"] == "info"
