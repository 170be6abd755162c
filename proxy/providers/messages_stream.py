"""OpenAI chat streams turned into Anthropic Messages events, chunk by chunk as they arrive."""

from __future__ import annotations

from typing import Any

import orjson

from proxy.core.dialect_errors import anthropic_error
from proxy.core.exchange import Usage
from proxy.providers.messages_answer import messages_usage, stop_reason
from proxy.providers.sse import SSEParser


def event(kind: str, obj: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


class MessagesFromChat:
    """A `StreamFilter`: chat SSE in (split anywhere), Messages events out.

    The first chunk opens the message; content opens a text block, each new tool call (a delta
    with an `id`) closes the open block and opens a tool_use block whose argument fragments
    become `input_json_delta`s. The finish reason closes the open block, but `message_delta`
    waits for the usage chunk (it comes after the finish chunk) or `[DONE]`.
    """

    __slots__ = (
        "_block",
        "_block_kind",
        "_blocks",
        "_done",
        "_finish",
        "_parser",
        "_started",
        "_tool_blocks",
        "_usage",
    )

    def __init__(self) -> None:
        self._parser = SSEParser()
        self._started = False
        self._block = -1
        """Index of the open content block; -1 when none is open."""
        self._block_kind = ""
        self._blocks = 0
        self._tool_blocks: dict[int, int] = {}
        """Chat tool-call index -> Messages block index."""
        self._finish: str | None = None
        self._usage: dict[str, Any] | None = None
        self._done = False

    @property
    def usage(self) -> Usage | None:
        u = self._usage
        if u is None:
            return None
        return Usage.of_chat(u)

    def chunk(self, data: bytes) -> bytes:
        out: list[bytes] = []
        for ev in self._parser.feed(data):
            if self._done:
                break
            if ev.data == b"[DONE]":
                self._finish_message(out)
                continue
            try:
                obj = orjson.loads(ev.data)
            except orjson.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                self._chunk(obj, out)
        return b"".join(out)

    def end(self) -> bytes:
        """A server that ended cleanly after its finish reason without `[DONE]`: close the
        message. Without a finish reason the stream broke: the relay adds the error event."""
        if self._done or self._finish is None:
            return b""
        out: list[bytes] = []
        self._finish_message(out)
        return b"".join(out)

    def _chunk(self, obj: dict[str, Any], out: list[bytes]) -> None:
        if "error" in obj:
            err = obj["error"] if isinstance(obj["error"], dict) else {}
            message = err.get("message") or "The upstream failed mid-stream."
            out.append(b"event: error\ndata: " + anthropic_error(500, message) + b"\n\n")
            self._done = True
            return
        if not self._started:
            self._start(obj, out)
        if isinstance(obj.get("usage"), dict):
            self._usage = obj["usage"]
        for choice in obj.get("choices") or ():
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if text:
                self._open("text", out, {"type": "text", "text": ""})
                out.append(self._delta({"type": "text_delta", "text": text}))
            for call in delta.get("tool_calls") or ():
                self._tool(call, out)
            if choice.get("finish_reason"):
                self._finish = stop_reason(choice["finish_reason"])
                self._close(out)

    def _start(self, obj: dict[str, Any], out: list[bytes]) -> None:
        self._started = True
        message = {
            "id": obj.get("id", ""),
            "type": "message",
            "role": "assistant",
            "model": obj.get("model", ""),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        out.append(event("message_start", {"type": "message_start", "message": message}))

    def _tool(self, call: dict[str, Any], out: list[bytes]) -> None:
        index = call.get("index", 0)
        fn = call.get("function") or {}
        if index not in self._tool_blocks:  # some servers repeat the id on every fragment
            block = {"type": "tool_use", "id": call.get("id", ""), "name": fn.get("name", "")}
            self._close(out)
            self._open("tool_use", out, {**block, "input": {}})
            self._tool_blocks[index] = self._block
        fragment = fn.get("arguments")
        if fragment and self._tool_blocks[index] == self._block:
            out.append(self._delta({"type": "input_json_delta", "partial_json": fragment}))

    def _open(self, kind: str, out: list[bytes], block: dict[str, Any]) -> None:
        if self._block >= 0 and self._block_kind == kind and kind == "text":
            return
        self._close(out)
        self._block = self._blocks
        self._blocks += 1
        self._block_kind = kind
        start = {"type": "content_block_start", "index": self._block, "content_block": block}
        out.append(event("content_block_start", start))

    def _close(self, out: list[bytes]) -> None:
        if self._block >= 0:
            stop = {"type": "content_block_stop", "index": self._block}
            out.append(event("content_block_stop", stop))
            self._block = -1
            self._block_kind = ""

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return event(
            "content_block_delta",
            {"type": "content_block_delta", "index": self._block, "delta": delta},
        )

    def _finish_message(self, out: list[bytes]) -> None:
        if not self._started:
            self._start({}, out)
        self._close(out)
        usage = messages_usage(self._usage)
        delta = {"stop_reason": self._finish or "end_turn", "stop_sequence": None}
        out.append(
            event("message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
        )
        out.append(event("message_stop", {"type": "message_stop"}))
        self._done = True
