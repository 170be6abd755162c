"""Gemini `streamGenerateContent?alt=sse` streams turned into OpenAI chat chunks as they arrive."""

from __future__ import annotations

import time
from typing import Any

import orjson

from proxy.core.errors import stream_error_event
from proxy.core.exchange import Usage
from proxy.providers.gemini_answer import calls_of, finish_reason, openai_usage, text_of
from proxy.providers.sse import SSEParser

DONE = b"data: [DONE]\n\n"


class ChatFromGemini:
    """A `StreamFilter`: Gemini SSE in (split anywhere), `chat.completion.chunk` SSE out.

    Each Gemini event is a whole GenerateContentResponse: text parts become content deltas,
    each functionCall (sent whole) one tool-call delta with its complete arguments. The stream
    has no end marker, so the chunk with `finishReason` (which carries the final usage) closes
    it: finish chunk, the usage chunk when asked for, `[DONE]`.
    """

    __slots__ = (
        "_created",
        "_done",
        "_id",
        "_include_usage",
        "_model",
        "_parser",
        "_started",
        "_tools",
        "_usage",
    )

    def __init__(self, include_usage: bool) -> None:
        self._parser = SSEParser()
        self._include_usage = include_usage
        self._id = ""
        self._model = ""
        self._created = int(time.time())
        self._started = False
        self._tools = 0
        self._usage: dict[str, Any] | None = None
        self._done = False

    @property
    def usage(self) -> Usage | None:
        u = self._usage
        return None if u is None else Usage.of_chat(u)

    def chunk(self, data: bytes) -> bytes:
        out: list[bytes] = []
        for ev in self._parser.feed(data):
            if self._done:
                break
            try:
                obj = orjson.loads(ev.data)
            except orjson.JSONDecodeError:
                continue
            if isinstance(obj, list) and obj:  # errors may come as a list of one
                obj = obj[0]
            if isinstance(obj, dict):
                self._event(obj, out)
        return b"".join(out)

    def end(self) -> bytes:
        return b""

    def _event(self, obj: dict[str, Any], out: list[bytes]) -> None:
        err = obj.get("error")
        if isinstance(err, dict):
            status = str(err.get("status") or "api_error")
            out.append(
                stream_error_event(str(err.get("message", "Upstream error.")), status, status)
            )
            self._done = True
            return
        if not self._started:
            self._started = True
            self._id = str(obj.get("responseId", ""))
            self._model = str(obj.get("modelVersion", ""))
            out.append(self._chunk({"role": "assistant", "content": ""}))
        usage = openai_usage(obj.get("usageMetadata"))
        if usage is not None:
            self._usage = usage
        candidates = obj.get("candidates") or [{}]
        cand = candidates[0] if isinstance(candidates[0], dict) else {}
        parts = (cand.get("content") or {}).get("parts") or []
        text = text_of(parts)
        if text:
            out.append(self._chunk({"content": text}))
        for call in calls_of(parts, self._id, self._tools):
            out.append(self._chunk({"tool_calls": [{"index": self._tools, **call}]}))
            self._tools += 1
        reason = cand.get("finishReason") or (obj.get("promptFeedback") or {}).get("blockReason")
        if reason:
            out.append(self._chunk({}, finish_reason(reason, self._tools > 0)))
            if self._include_usage and self._usage is not None:
                out.append(self._frame([], self._usage))
            out.append(DONE)
            self._done = True

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return self._frame([choice])

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
