"""The Gemini dialect: generateContent upstreams, spoken to in translation for chat clients."""

from __future__ import annotations

from urllib.parse import quote

from proxy.config.values import Endpoint, Upstream
from proxy.core.exchange import Exchange, Usage
from proxy.core.failures import FailureKind, classify_status
from proxy.providers.base import Progress, StreamFilter, UpstreamRequest
from proxy.providers.chain import Chained
from proxy.providers.gemini_answer import error_to_openai, usage_of
from proxy.providers.gemini_answer import to_chat as chat_of
from proxy.providers.gemini_request import to_gemini
from proxy.providers.gemini_stream import ChatFromGemini
from proxy.providers.messages_answer import error_to_anthropic, to_message
from proxy.providers.messages_request import to_chat
from proxy.providers.messages_stream import MessagesFromChat
from proxy.providers.sse_progress import DataProgress
from proxy.providers.stream_errors import google_stream_status


class Gemini:
    """`x-goog-api-key` (never a `?key=` query, which would end up in logs); the model in the
    path; chat translated to generateContent and back, streams through `alt=sse`."""

    name = "gemini"

    def supports(self, up: Upstream, endpoint: Endpoint) -> bool:
        return endpoint in (Endpoint.CHAT, Endpoint.MESSAGES)

    def request(self, up: Upstream, ex: Exchange) -> UpstreamRequest:
        pk = ex.peek
        assert pk is not None
        model = quote(up.model or pk.model, safe="")
        if pk.stream:
            url = f"{up.base_url}/models/{model}:streamGenerateContent?alt=sse"
        else:
            url = f"{up.base_url}/models/{model}:generateContent"
        if up.query:
            url += ("&" if pk.stream else "?") + up.query
        headers = ex.forward_headers.copy()
        headers.pop("openai-beta", None)
        if up.credential:
            headers["x-goog-api-key"] = up.credential
        body = ex.bodies.get("->gemini")
        if body is None:
            chat = ex.body
            if ex.endpoint is Endpoint.MESSAGES:  # Messages -> chat -> generateContent
                chat = to_chat(ex.body, None, ask_usage=False)
            body = ex.bodies["->gemini"] = to_gemini(chat)
        return UpstreamRequest(
            url,
            headers,
            body,
            ex.snap.server.max_response_bytes,
            DataProgress() if ex.stream else None,
        )

    def progress(self) -> Progress | None:
        return DataProgress()

    def failure(self, status: int) -> FailureKind | None:
        return classify_status(status)

    def stream_status(self, first: bytes) -> int | None:
        return google_stream_status(first)

    def usage(self, body: bytes) -> Usage | None:
        return usage_of(body)

    def answer(self, status: int, body: bytes, ex: Exchange) -> bytes:
        if ex.endpoint is Endpoint.MESSAGES:
            if status < 300:
                return to_message(chat_of(body))
            return error_to_anthropic(status, error_to_openai(body))
        return chat_of(body) if status < 300 else error_to_openai(body)

    def stream(self, up: Upstream, ex: Exchange) -> StreamFilter:
        if ex.endpoint is Endpoint.MESSAGES:
            return Chained(ChatFromGemini(include_usage=True), MessagesFromChat())
        pk = ex.peek
        return ChatFromGemini(pk is not None and pk.include_usage)
