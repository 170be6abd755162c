"""Anthropic Messages streams turned into OpenAI chat chunks, event by event as they arrive."""

from __future__ import annotations

import time
from typing import Any

import orjson

from proxy.core.errors import stream_error_event
from proxy.core.exchange import Usage
from proxy.providers.anthropic_answer import finish_reason, messages_usage, openai_usage
from proxy.providers.sse import SSEParser

DONE = b"data: [DONE]\n\n"


class ChatFromMessages:
    """A `StreamFilter`: Messages SSE in (split anywhere), `chat.completion.chunk` SSE out.

    Follows the state machine of the Messages stream: text deltas become `content` deltas,
    each tool_use block becomes one tool call (its index counted over tool blocks only) whose
    `input_json_delta` fragments are streamed as `arguments`, `message_delta` gives the
    finish reason, and the usage chunk is added when the client asked for it.
    """

    __slots__ = (
        "_created",
        "_done",
        "_finished",
        "_id",
        "_include_usage",
        "_model",
        "_parser",
        "_tool_of_block",
        "_tools",
        "_usage",
    )

    def __init__(self, include_usage: bool, model: str = "") -> None:
        self._parser = SSEParser()
        self._include_usage = include_usage
        self._id = ""
        self._model = model
        self._created = int(time.time())
        self._tools = 0
        self._tool_of_block: dict[int, int] = {}
        self._usage: dict[str, Any] = {}
        self._done = False
        self._finished = False

    @property
    def usage(self) -> Usage | None:
        return messages_usage(self._usage) if self._usage else None

    def chunk(self, data: bytes) -> bytes:
        if self._done:
            return b""
        out: list[bytes] = []
        for ev in self._parser.feed(data):
            try:
                obj = orjson.loads(ev.data)
            except orjson.JSONDecodeError:
                continue
            if isinstance(obj, dict) and not self._done:  # nothing after message_stop/error
                self._event(obj, out)
        return b"".join(out)

    def end(self) -> bytes:
        """Ended after message_delta but without message_stop: finish the stream anyway."""
        if self._done or not self._finished:
            return b""
        self._done = True
        return (self._usage_chunk() if self._include_usage else b"") + DONE

    def _event(self, obj: dict[str, Any], out: list[bytes]) -> None:
        kind = obj.get("type")
        if kind == "content_block_delta":
            self._delta(obj, out)
        elif kind == "message_start":
            msg = obj.get("message") or {}
            self._id = msg.get("id", "")
            self._model = msg.get("model") or self._model
            self._merge_usage(msg.get("usage"))
            out.append(self._chunk({"role": "assistant", "content": ""}))
        elif kind == "content_block_start":
            block = obj.get("content_block") or {}
            if block.get("type") == "tool_use":
                ordinal = self._tools
                self._tools += 1
                self._tool_of_block[obj.get("index", 0)] = ordinal
                call = {
                    "index": ordinal,
                    "id": block.get("id", ""),
                    "type": "function",
                    "function": {"name": block.get("name", ""), "arguments": ""},
                }
                out.append(self._chunk({"tool_calls": [call]}))
        elif kind == "message_delta":
            self._merge_usage(obj.get("usage"))
            reason = finish_reason((obj.get("delta") or {}).get("stop_reason"))
            out.append(self._chunk({}, reason))
            self._finished = True
        elif kind == "message_stop":
            if self._include_usage:
                out.append(self._usage_chunk())
            out.append(DONE)
            self._done = True
        elif kind == "error":
            err = obj.get("error") or {}
            etype = err.get("type", "api_error")
            out.append(stream_error_event(err.get("message", "Upstream error."), etype, etype))
            self._done = True

    def _delta(self, obj: dict[str, Any], out: list[bytes]) -> None:
        delta = obj.get("delta") or {}
        dtype = delta.get("type")
        if dtype == "text_delta":
            out.append(self._chunk({"content": delta.get("text", "")}))
        elif dtype == "thinking_delta":  # the `reasoning_content` convention (DeepSeek and co)
            out.append(self._chunk({"reasoning_content": delta.get("thinking", "")}))
        elif dtype == "input_json_delta":
            fragment = delta.get("partial_json", "")
            ordinal = self._tool_of_block.get(obj.get("index", 0))
            if fragment and ordinal is not None:
                call = {"index": ordinal, "function": {"arguments": fragment}}
                out.append(self._chunk({"tool_calls": [call]}))

    def _merge_usage(self, usage: object) -> None:
        # message_delta counts are cumulative and may repeat the input counts.
        if isinstance(usage, dict):
            self._usage.update({k: v for k, v in usage.items() if v is not None})

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return self._frame([choice])

    def _usage_chunk(self) -> bytes:
        return self._frame([], openai_usage(self._usage))

    def _frame(self, choices: list[dict[str, Any]], usage: object = None) -> bytes:
        obj: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": choices,
        }
        if usage is not None:
            obj["usage"] = usage
        return b"data: " + orjson.dumps(obj) + b"\n\n"
