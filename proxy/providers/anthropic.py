"""The Anthropic dialect: Messages upstreams, spoken to in translation for OpenAI chat clients."""

from __future__ import annotations

from proxy.config.values import Endpoint, Upstream
from proxy.core.exchange import Exchange, Usage
from proxy.core.failures import FailureKind, classify_status
from proxy.providers.anthropic_answer import error_to_openai, to_chat, usage_of
from proxy.providers.anthropic_request import to_messages
from proxy.providers.anthropic_stream import ChatFromMessages
from proxy.providers.base import StreamFilter, UpstreamRequest

MESSAGES_PATH = "/messages"
"""Below the base URL, which carries the version (`https://api.anthropic.com/v1`)."""


class Anthropic:
    """`x-api-key` and `anthropic-version`; chat translated to Messages and back."""

    name = "anthropic"

    def supports(self, endpoint: Endpoint) -> bool:
        return endpoint is Endpoint.CHAT

    def request(self, up: Upstream, ex: Exchange) -> UpstreamRequest:
        url = up.base_url + MESSAGES_PATH
        if up.query:
            url += "?" + up.query
        headers = ex.forward_headers.copy()
        headers.pop("openai-beta", None)
        headers["anthropic-version"] = up.anthropic_version
        if up.credential:
            headers["x-api-key"] = up.credential
        key = ("anthropic", up.model)
        body = ex.bodies.get(key)
        if body is None:
            body = ex.bodies[key] = to_messages(ex.body, up.model)
        return UpstreamRequest(url, headers, body)

    def failure(self, status: int) -> FailureKind | None:
        # 529 overloaded_error is a 5xx: it fails over like a 503.
        return classify_status(status)

    def usage(self, body: bytes) -> Usage | None:
        return usage_of(body)

    def answer(self, status: int, body: bytes, ex: Exchange) -> bytes:
        if status < 300:
            return to_chat(body)
        return error_to_openai(body)

    def stream(self, up: Upstream, ex: Exchange) -> StreamFilter:
        pk = ex.peek
        return ChatFromMessages(pk is not None and pk.include_usage)
