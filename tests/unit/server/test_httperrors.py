"""What a parser rejection is answered with: status, code, and nothing of the input."""

from __future__ import annotations

from aiohttp.http_exceptions import BadHttpMessage, BadStatusLine, LineTooLong

from proxy.server.httperrors import parser_error


def test_header_size_and_count_are_431_and_the_rest_400() -> None:
    too_long = parser_error(400, LineTooLong(b"X-Key: sk-secret", 16384, "99999"))
    assert (too_long.status, too_long.code) == (431, "request_header_too_large")
    assert parser_error(400, BadHttpMessage("Too many headers received")).status == 431
    smuggle = parser_error(400, BadHttpMessage("Transfer-Encoding can't be present with ..."))
    assert (smuggle.status, smuggle.code) == (400, "invalid_http_request")
    assert parser_error(400, BadStatusLine("GARBAGE sk-secret")).status == 400
    assert parser_error(500, RuntimeError("boom")).status == 500
    for err in (too_long, smuggle, parser_error(400, BadStatusLine("sk-secret"))):
        assert b"sk-secret" not in err.body()
        assert err.headers()["x-should-retry"] == "false"
