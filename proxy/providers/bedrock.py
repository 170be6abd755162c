"""The Bedrock dialect: Converse / ConverseStream upstreams, SigV4-signed, translated for chat."""

from __future__ import annotations

from urllib.parse import quote

from proxy.config.values import Endpoint, Upstream
from proxy.core.exchange import Exchange, Usage
from proxy.core.failures import FailureKind, classify_status
from proxy.providers.base import Progress, StreamFilter, UpstreamRequest
from proxy.providers.bedrock_answer import error_to_openai, usage_of
from proxy.providers.bedrock_answer import to_chat as chat_of
from proxy.providers.bedrock_request import to_converse
from proxy.providers.bedrock_sign import sign
from proxy.providers.bedrock_stream import ChatFromConverse
from proxy.providers.chain import Chained
from proxy.providers.messages_answer import error_to_anthropic, to_message
from proxy.providers.messages_request import to_chat
from proxy.providers.messages_stream import MessagesFromChat


class Bedrock:
    """`{base_url}/model/{model}/converse` (or `/converse-stream`), signed per attempt with the
    upstream's key pair; chat (and Messages, via chat) translated to Converse and back."""

    name = "bedrock"

    def supports(self, up: Upstream, endpoint: Endpoint) -> bool:
        return endpoint in (Endpoint.CHAT, Endpoint.MESSAGES)

    def request(self, up: Upstream, ex: Exchange) -> UpstreamRequest:
        pk = ex.peek
        assert pk is not None
        model = quote(up.model or pk.model, safe="")
        url = f"{up.base_url}/model/{model}/{'converse-stream' if pk.stream else 'converse'}"
        if up.query:
            url += "?" + up.query
        body = ex.bodies.get("->converse")
        if body is None:
            chat = ex.body
            if ex.endpoint is Endpoint.MESSAGES:
                chat = to_chat(ex.body, None, ask_usage=False)
            body = ex.bodies["->converse"] = to_converse(chat)
        headers = ex.forward_headers.copy()
        headers.pop("openai-beta", None)
        if pk.stream:
            headers["Accept"] = "application/vnd.amazon.eventstream"
        # The signature covers the clock, so it is made per attempt, never cached.
        headers.update(
            sign(url, body, up.region or "", up.aws_key_id or "", up.credential or "", up.aws_token)
        )
        return UpstreamRequest(url, headers, body, ex.snap.server.max_response_bytes, None)

    def progress(self) -> Progress | None:
        return None  # binary event-stream frames: every byte is progress

    def failure(self, status: int) -> FailureKind | None:
        return classify_status(status)

    def stream_status(self, first: bytes) -> int | None:
        # An exception message can open the event stream; it ends the client's stream instead.
        return None

    def usage(self, body: bytes) -> Usage | None:
        return usage_of(body)

    def answer(self, status: int, body: bytes, ex: Exchange) -> bytes:
        model = ex.peek.model if ex.peek else ""
        if ex.endpoint is Endpoint.MESSAGES:
            if status < 300:
                return to_message(chat_of(body, model))
            return error_to_anthropic(status, error_to_openai(body))
        return chat_of(body, model) if status < 300 else error_to_openai(body)

    def stream(self, up: Upstream, ex: Exchange) -> StreamFilter:
        model = ex.peek.model if ex.peek else ""
        if ex.endpoint is Endpoint.MESSAGES:
            return Chained(ChatFromConverse(True, model), MessagesFromChat())
        return ChatFromConverse(ex.peek is not None and ex.peek.include_usage, model)
