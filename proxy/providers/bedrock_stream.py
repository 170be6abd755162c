"""Bedrock ConverseStream (AWS binary event stream) turned into OpenAI chat chunks as it arrives."""

from __future__ import annotations

import time
from typing import Any

import orjson

from proxy.core.errors import stream_error_event
from proxy.core.exchange import Usage
from proxy.providers.bedrock_answer import converse_usage, finish_reason, openai_usage

DONE = b"data: [DONE]\n\n"


class ChatFromConverse:
    """A `StreamFilter`: event-stream messages in (split anywhere; botocore's parser checks the
    prelude and message CRCs), `chat.completion.chunk` SSE out.

    text deltas become content deltas; a toolUse block start opens a tool call and its `input`
    fragments stream as `arguments`; messageStop gives the finish reason; the metadata event
    after it carries usage, so it closes the stream (usage chunk when asked for, `[DONE]`).
    """

    __slots__ = (
        "_buffer",
        "_created",
        "_done",
        "_finished",
        "_include_usage",
        "_model",
        "_seen",
        "_started",
        "_tool_of_block",
        "_tools",
        "_usage",
    )

    def __init__(self, include_usage: bool, model: str) -> None:
        from botocore.eventstream import EventStreamBuffer

        self._buffer: Any = EventStreamBuffer()
        self._include_usage = include_usage
        self._model = model
        self._created = int(time.time())
        self._started = False
        self._tools = 0
        self._tool_of_block: dict[int, int] = {}
        self._usage: dict[str, Any] | None = None
        self._seen: Usage | None = None
        self._done = False
        self._finished = False

    @property
    def usage(self) -> Usage | None:
        return self._seen

    def chunk(self, data: bytes) -> bytes:
        if self._done:
            return b""
        out: list[bytes] = []
        self._buffer.add_data(data)
        try:
            for message in self._buffer:
                if not self._done:  # nothing after the end or an exception message
                    self._message(message.headers, message.payload, out)
        except Exception:  # noqa: BLE001 - botocore's parser errors (bad CRC, bad length)
            message = "The upstream event stream is corrupt."
            out.append(stream_error_event(message, "upstream_error", "upstream_error"))
            self._done = True
        return b"".join(out)

    def end(self) -> bytes:
        """Ended after messageStop without the metadata event: finish without usage."""
        if self._done or not self._finished:
            return b""
        self._done = True
        return DONE

    def _message(self, headers: dict[str, Any], payload: bytes, out: list[bytes]) -> None:
        kind = headers.get(":message-type")
        if kind != "event":
            name = str(headers.get(":exception-type") or headers.get(":error-code") or "error")
            try:
                text = str(orjson.loads(payload).get("message", name))
            except (orjson.JSONDecodeError, AttributeError):
                text = name
            out.append(stream_error_event(text, name, name))
            self._done = True
            return
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return
        if isinstance(obj, dict):
            self._event(str(headers.get(":event-type")), obj, out)

    def _event(self, event: str, obj: dict[str, Any], out: list[bytes]) -> None:
        if not self._started:
            self._started = True
            out.append(self._chunk({"role": "assistant", "content": ""}))
        if event == "contentBlockDelta":
            delta = obj.get("delta") or {}
            if "text" in delta:
                out.append(self._chunk({"content": delta["text"]}))
            use = delta.get("toolUse")
            ordinal = self._tool_of_block.get(obj.get("contentBlockIndex", 0))
            if isinstance(use, dict) and use.get("input") and ordinal is not None:
                call = {"index": ordinal, "function": {"arguments": use["input"]}}
                out.append(self._chunk({"tool_calls": [call]}))
        elif event == "contentBlockStart":
            use = (obj.get("start") or {}).get("toolUse")
            if isinstance(use, dict):
                ordinal = self._tools
                self._tools += 1
                self._tool_of_block[obj.get("contentBlockIndex", 0)] = ordinal
                fn = {"name": use.get("name", ""), "arguments": ""}
                call = {"index": ordinal, "id": use.get("toolUseId", ""), "type": "function"}
                out.append(self._chunk({"tool_calls": [{**call, "function": fn}]}))
        elif event == "messageStop":
            out.append(self._chunk({}, finish_reason(obj.get("stopReason"))))
            self._finished = True
        elif event == "metadata":
            self._usage = openai_usage(obj.get("usage"))
            self._seen = converse_usage(obj.get("usage"))
            if self._include_usage and self._usage is not None:
                out.append(self._frame([], self._usage))
            out.append(DONE)
            self._done = True

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return self._frame([choice])

    def _frame(self, choices: list[dict[str, Any]], usage: object = None) -> bytes:
        obj: dict[str, Any] = {
            "id": "",
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": choices,
        }
        if usage is not None:
            obj["usage"] = usage
        return b"data: " + orjson.dumps(obj) + b"\n\n"
