"""The OpenAI dialect: any OpenAI-compatible server, spoken to as the client spoke to us."""

from __future__ import annotations

from proxy.config.values import Endpoint, Upstream
from proxy.core.exchange import Exchange, Usage
from proxy.core.failures import FailureKind, classify_status
from proxy.core.spliced import Spliced
from proxy.providers.base import Progress, StreamFilter, UpstreamRequest
from proxy.providers.messages_answer import error_to_anthropic, to_message
from proxy.providers.messages_request import to_chat
from proxy.providers.messages_stream import MessagesFromChat
from proxy.providers.openai_body import SPLICED_FROM, ask_for_usage, rewrite_model, spliced
from proxy.providers.openai_usage import UsageTap, drop_usage_events, from_body
from proxy.providers.responses_usage import ResponsesUsageObserver
from proxy.providers.sse_progress import DataProgress
from proxy.providers.stream_errors import openai_stream_status
from proxy.providers.tool_ids import shorten_tool_ids

PATHS = {
    Endpoint.CHAT: "/chat/completions",
    Endpoint.COMPLETIONS: "/completions",
    Endpoint.EMBEDDINGS: "/embeddings",
    Endpoint.RESPONSES: "/responses",
}
"""Below the upstream's base URL (which carries the version, e.g. `/v1`)."""

_MAX_PENDING = 1 << 20
_STREAM_OPTIONS = frozenset({Endpoint.CHAT, Endpoint.COMPLETIONS})
"""Endpoints whose streams report usage only when asked (`stream_options.include_usage`)."""


class OpenAI:
    """Bearer credential, OpenAI paths, the model id spliced in, usage asked for on streams."""

    name = "openai"

    def supports(self, up: Upstream, endpoint: Endpoint) -> bool:
        if endpoint is Endpoint.RESPONSES:
            return up.responses
        return endpoint in PATHS or endpoint is Endpoint.MESSAGES

    def request(self, up: Upstream, ex: Exchange) -> UpstreamRequest:
        body: bytes | Spliced
        if ex.endpoint is Endpoint.MESSAGES:
            endpoint, body = Endpoint.CHAT, messages_as_chat(up, ex)
        else:
            endpoint, body = ex.endpoint, self._body(up, ex)
        headers = ex.forward_headers.copy()
        self.authorize(headers, up)
        return UpstreamRequest(
            self.url(up, endpoint),
            headers,
            body,
            ex.snap.server.max_response_bytes,
            DataProgress() if ex.stream else None,
        )

    def url(self, up: Upstream, endpoint: Endpoint) -> str:
        """Where `endpoint` lives on this upstream (the base URL's query kept)."""
        url = up.base_url + PATHS[endpoint]
        return url + "?" + up.query if up.query else url

    def authorize(self, headers: dict[str, str], up: Upstream) -> None:
        if up.credential:
            headers["Authorization"] = "Bearer " + up.credential

    def failure(self, status: int) -> FailureKind | None:
        return classify_status(status)

    def stream_status(self, first: bytes) -> int | None:
        return openai_stream_status(first)

    def usage(self, body: bytes) -> Usage | None:
        return from_body(body)

    def progress(self) -> Progress | None:
        return DataProgress()

    def answer(self, status: int, body: bytes, ex: Exchange) -> bytes:
        if ex.endpoint is Endpoint.MESSAGES:
            return to_message(body) if status < 300 else error_to_anthropic(status, body)
        return body

    def stream(self, up: Upstream, ex: Exchange) -> StreamFilter:
        if ex.endpoint is Endpoint.MESSAGES:
            return MessagesFromChat()
        if ex.endpoint is Endpoint.RESPONSES:
            return ResponsesUsageObserver()
        return UsageStripper() if adds_usage(up, ex) else UsageObserver()

    @staticmethod
    def _body(up: Upstream, ex: Exchange) -> bytes | Spliced:
        """The client's bytes with the upstream's model id, and the usage option on streams;
        a large body as pieces of the client's buffer (no copy of it)."""
        pk = ex.peek
        assert pk is not None
        add_usage = adds_usage(up, ex)
        body = ex.body
        if len(body) >= SPLICED_FROM and not up.short_tool_ids:
            pieces = spliced(body, pk, up.model, add_usage)  # a few views: not worth caching
            if pieces is not None:
                return pieces
        key = (up.model, add_usage, up.short_tool_ids)
        out = ex.bodies.get(key)
        if out is None:
            out = rewrite_model(body, pk.model, up.model, pk.model_span) if up.model else body
            if add_usage:
                out = ask_for_usage(out, pk.has_stream_options)
            if up.short_tool_ids:
                out = shorten_tool_ids(out)
            ex.bodies[key] = out
        return out


def adds_usage(up: Upstream, ex: Exchange) -> bool:
    """True when the gateway asks for the usage chunk itself, so it must hide it again."""
    pk = ex.peek
    return (
        up.stream_usage
        and pk is not None
        and pk.stream
        and not pk.include_usage
        and ex.endpoint in _STREAM_OPTIONS
    )


class UsageObserver:
    """Passes every byte unchanged and notes the usage event when it goes by."""

    __slots__ = ("_tap",)

    def __init__(self) -> None:
        self._tap = UsageTap()

    @property
    def usage(self) -> Usage | None:
        return self._tap.usage

    def chunk(self, data: bytes) -> bytes:
        self._tap.feed(data)
        return data

    def end(self) -> bytes:
        return b""


class UsageStripper:
    """Notes usage and drops the usage-only event the gateway asked for on the client's behalf.

    Only whole events are forwarded while stripping (a partial one waits for its end), so the
    usage event can be cut out exactly; every other byte passes unchanged.
    """

    __slots__ = ("_active", "_pending", "_tap")

    def __init__(self) -> None:
        self._tap = UsageTap()
        self._pending = b""
        self._active = True

    @property
    def usage(self) -> Usage | None:
        return self._tap.usage

    def chunk(self, data: bytes) -> bytes:
        if not self._active:
            self._tap.feed(data)
            return data
        if self._pending:
            data = self._pending + data
            self._pending = b""
        cut = data.rfind(b"\n\n") + 2
        if cut < 2:
            if len(data) > _MAX_PENDING:  # not SSE framed as expected: stop holding back
                self._active = False
                self._tap.feed(data)
                return data
            self._pending = data
            return b""
        whole, self._pending = data[:cut], data[cut:]
        if not self._tap.waits_for(whole):
            return whole  # the common chunk: no usage event to note or to cut
        self._tap.feed(whole)  # whole events: a usage key split across reads is still seen
        return drop_usage_events(whole)

    def end(self) -> bytes:
        pending, self._pending = self._pending, b""
        return pending


def messages_as_chat(up: Upstream, ex: Exchange) -> bytes:
    """A Messages client's body as chat (usage asked for on streams, for metering)."""
    key = ("messages->chat", up.model, up.stream_usage, up.short_tool_ids)
    body = ex.bodies.get(key)
    if body is None:
        body = to_chat(ex.body, up.model, up.stream_usage)
        if up.short_tool_ids:
            body = shorten_tool_ids(body)
        ex.bodies[key] = body
    return body
