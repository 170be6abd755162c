"""The Anthropic dialect: Messages upstreams, spoken to in translation for OpenAI chat clients."""

from __future__ import annotations

from proxy.config.values import Endpoint, Upstream
from proxy.core.exchange import Exchange, Usage
from proxy.core.failures import FailureKind, classify_status
from proxy.core.spliced import Spliced
from proxy.providers.anthropic_answer import error_to_openai, to_chat, usage_of
from proxy.providers.anthropic_request import to_messages
from proxy.providers.anthropic_stream import ChatFromMessages
from proxy.providers.anthropic_usage import MessagesUsageObserver
from proxy.providers.base import Progress, StreamFilter, UpstreamRequest
from proxy.providers.openai_body import SPLICED_FROM, rewrite_model, spliced
from proxy.providers.sse_progress import DataProgress, OpeningProgress
from proxy.providers.stream_errors import messages_stream_status

PATHS = {
    Endpoint.CHAT: "/messages",
    Endpoint.MESSAGES: "/messages",
    Endpoint.COUNT_TOKENS: "/messages/count_tokens",
}
"""Below the base URL, which carries the version (`https://api.anthropic.com/v1`)."""
_NATIVE = frozenset({Endpoint.MESSAGES, Endpoint.COUNT_TOKENS})
"""Client endpoints in this dialect: bytes pass through (the model id spliced in)."""


class Anthropic:
    """`x-api-key` and `anthropic-version`; Messages clients pass through, chat is translated."""

    name = "anthropic"

    def supports(self, up: Upstream, endpoint: Endpoint) -> bool:
        return endpoint in PATHS

    def request(self, up: Upstream, ex: Exchange) -> UpstreamRequest:
        url = up.base_url + PATHS[ex.endpoint]
        if up.query:
            url += "?" + up.query
        headers = ex.forward_headers.copy()
        headers.pop("openai-beta", None)
        headers["anthropic-version"] = up.anthropic_version
        if up.credential:
            headers["x-api-key"] = up.credential
        beta = ex.client_headers.get("anthropic-beta")
        if beta and ex.endpoint in _NATIVE:
            headers["anthropic-beta"] = beta  # feature flags of the client's own dialect
        native = ex.endpoint in _NATIVE
        pk = ex.peek
        assert pk is not None
        body: bytes | Spliced | None = None
        if native and len(ex.body) >= SPLICED_FROM:
            body = spliced(ex.body, pk, up.model, add_usage=False)  # views: no copy to rename
        key = ("messages" if native else "chat->messages", up.model)
        if body is None:
            body = ex.bodies.get(key)
        if body is None:
            if native:
                body = (
                    rewrite_model(ex.body, pk.model, up.model, pk.model_span)
                    if up.model
                    else ex.body
                )
            else:
                body = to_messages(ex.body, up.model)
            ex.bodies[key] = body
        return UpstreamRequest(
            url,
            headers,
            body,
            ex.snap.server.max_response_bytes,
            OpeningProgress() if ex.stream else None,  # errors before content fail over
        )

    def progress(self) -> Progress | None:
        return DataProgress()

    def failure(self, status: int) -> FailureKind | None:
        # 529 overloaded_error is a 5xx: it fails over like a 503.
        return classify_status(status)

    def stream_status(self, first: bytes) -> int | None:
        return messages_stream_status(first)

    def usage(self, body: bytes) -> Usage | None:
        return usage_of(body)

    def answer(self, status: int, body: bytes, ex: Exchange) -> bytes:
        if ex.endpoint in _NATIVE:
            return body
        if status < 300:
            return to_chat(body)
        return error_to_openai(body)

    def stream(self, up: Upstream, ex: Exchange) -> StreamFilter:
        if ex.endpoint in _NATIVE:
            return MessagesUsageObserver()
        pk = ex.peek
        return ChatFromMessages(pk is not None and pk.include_usage)
