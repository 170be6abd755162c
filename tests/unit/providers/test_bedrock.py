"""Tests for proxy.providers.bedrock_*: chat spoken to Converse, SigV4, the binary event stream."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from proxy.core.errors import GatewayError
from proxy.core.exchange import Usage
from proxy.fake.bedrock_dialect import FAKE_KEY_ID, FAKE_SECRET, frame, verify
from proxy.fake.openai_dialect import Invalid
from proxy.providers.bedrock_answer import error_to_openai, to_chat, usage_of
from proxy.providers.bedrock_request import to_converse
from proxy.providers.bedrock_sign import sign
from proxy.providers.bedrock_stream import ChatFromConverse
from proxy.providers.sse import SSEParser

URL = "http://127.0.0.1:9/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"


def test_request_translation() -> None:
    out = orjson.loads(
        to_converse(
            orjson.dumps(
                {
                    "model": "m",
                    "messages": [
                        {"role": "system", "content": "terse"},
                        {
                            "role": "user",
                            "content": [
                                {"type": "text", "text": "see"},
                                {
                                    "type": "image_url",
                                    "image_url": {"url": "data:image/png;base64,AAAA"},
                                },
                            ],
                        },
                        {
                            "role": "assistant",
                            "content": None,
                            "tool_calls": [
                                {
                                    "id": "t1",
                                    "type": "function",
                                    "function": {"name": "f", "arguments": '{"a":1}'},
                                }
                            ],
                        },
                        {"role": "tool", "tool_call_id": "t1", "content": "42"},
                    ],
                    "tools": [
                        {
                            "type": "function",
                            "function": {"name": "f", "parameters": {"type": "object"}},
                        }
                    ],
                    "tool_choice": "required",
                    "max_tokens": 99,
                    "stop": ["X"],
                }
            )
        )
    )
    assert out["system"] == [{"text": "terse"}]
    user, assistant, result = out["messages"]
    assert user["content"][1] == {"image": {"format": "png", "source": {"bytes": "AAAA"}}}
    assert assistant["content"] == [
        {"toolUse": {"toolUseId": "t1", "name": "f", "input": {"a": 1}}}
    ]
    assert result == {
        "role": "user",
        "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "42"}]}}],
    }
    assert out["inferenceConfig"] == {"maxTokens": 99, "stopSequences": ["X"]}
    assert out["toolConfig"] == {
        "tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object"}}}}],
        "toolChoice": {"any": {}},
    }


def test_images_by_url_are_400() -> None:
    body = {
        "model": "m",
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}],
            }
        ],
    }
    with pytest.raises(GatewayError):
        to_converse(orjson.dumps(body))


def test_answer_usage_and_errors() -> None:
    answer = {
        "output": {
            "message": {
                "role": "assistant",
                "content": [
                    {"text": "hi"},
                    {"toolUse": {"toolUseId": "t", "name": "f", "input": {}}},
                ],
            }
        },
        "stopReason": "tool_use",
        "usage": {"inputTokens": 5, "outputTokens": 2, "cacheReadInputTokens": 3},
    }
    out = orjson.loads(to_chat(orjson.dumps(answer), "route"))
    assert out["choices"][0]["message"]["content"] == "hi"
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    assert out["usage"]["prompt_tokens"] == 8 and out["usage"]["prompt_tokens_details"] == {
        "cached_tokens": 3
    }
    assert usage_of(orjson.dumps(answer)) == Usage(8, 2, tokens_cached=3)
    assert (
        orjson.loads(error_to_openai(b'{"message":"Too many requests"}'))["error"]["message"]
        == "Too many requests"
    )


def test_signature_verifies_and_tampering_is_refused() -> None:
    body = b'{"messages":[]}'
    headers = CIMultiDict({"Content-Type": "application/json", "Host": "127.0.0.1:9"})
    headers.update(sign(URL, body, "us-east-1", FAKE_KEY_ID, FAKE_SECRET, None))
    assert headers["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={FAKE_KEY_ID}/")
    assert FAKE_SECRET not in str(headers)
    keys = {FAKE_KEY_ID: FAKE_SECRET}
    verify("POST", URL, headers, body, keys)  # no exception: the signature matches
    with pytest.raises(Invalid) as caught:
        verify("POST", URL, headers, body + b" ", keys)
    assert caught.value.status == 403
    with pytest.raises(Invalid):
        verify("POST", URL, headers, body, {FAKE_KEY_ID: "another-secret"})
    with pytest.raises(Invalid):
        verify("POST", URL.replace("converse", "converse-stream"), headers, body, keys)


STREAM = b"".join(
    [
        frame("messageStart", {"role": "assistant"}),
        frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hel"}}),
        frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "lo"}}),
        frame("contentBlockStop", {"contentBlockIndex": 0}),
        frame(
            "contentBlockStart",
            {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "t9", "name": "f"}}},
        ),
        frame(
            "contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"a":'}}}
        ),
        frame(
            "contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": " 1}"}}}
        ),
        frame("contentBlockStop", {"contentBlockIndex": 1}),
        frame("messageStop", {"stopReason": "tool_use"}),
        frame(
            "metadata",
            {
                "usage": {"inputTokens": 7, "outputTokens": 3, "totalTokens": 10},
                "metrics": {"latencyMs": 5},
            },
        ),
    ]
)


def translate(pieces: list[bytes], include_usage: bool = True) -> tuple[list[Any], Usage | None]:
    t = ChatFromConverse(include_usage, "route")
    out = b"".join(t.chunk(p) for p in pieces) + t.end()
    evs = [e.data if e.data == b"[DONE]" else orjson.loads(e.data) for e in SSEParser().feed(out)]
    return [e if isinstance(e, bytes) else {**e, "created": 0} for e in evs], t.usage


def test_event_stream_translated() -> None:
    evs, usage = translate([STREAM])
    assert evs[-1] == b"[DONE]"
    deltas = [e["choices"][0]["delta"] for e in evs[:-1] if e["choices"]]
    assert "".join(d.get("content", "") for d in deltas) == "Hello"
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert calls[0]["id"] == "t9" and calls[0]["function"]["name"] == "f"
    assert orjson.loads("".join(c["function"]["arguments"] for c in calls)) == {"a": 1}
    assert [e["choices"][0]["finish_reason"] for e in evs[:-1] if e["choices"]][-1] == "tool_calls"
    assert evs[-2]["usage"]["prompt_tokens"] == 7
    assert usage == Usage(7, 3)


def test_exception_message_and_corrupt_frames_end_with_an_error_event() -> None:
    throttled = frame("throttlingException", {"message": "Rate exceeded"}, kind="exception")
    evs, _ = translate([frame("messageStart", {"role": "assistant"}), throttled])
    assert evs[-1]["error"]["message"] == "Rate exceeded"
    corrupt = bytearray(frame("messageStart", {"role": "assistant"}))
    corrupt[-1] ^= 0xFF  # the message CRC no longer matches
    evs, _ = translate([bytes(corrupt)])
    assert evs[-1]["error"]["code"] == "upstream_error"


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=30))
def test_split_at_any_byte_boundary_gives_the_same_events(points: list[int]) -> None:
    ps = sorted(set(points))
    pieces = [STREAM[a:b] for a, b in zip([0, *ps], [*ps, len(STREAM)], strict=True)]
    assert translate(pieces) == translate([STREAM])


def test_a_stream_ending_after_message_stop_without_metadata_still_ends_cleanly() -> None:
    meta = frame(
        "metadata",
        {
            "usage": {"inputTokens": 7, "outputTokens": 3, "totalTokens": 10},
            "metrics": {"latencyMs": 5},
        },
    )
    evs, usage = translate([STREAM[: len(STREAM) - len(meta)]])
    assert evs[-1] == b"[DONE]" and usage is None
    stop = frame("messageStop", {"stopReason": "tool_use"})
    evs, _ = translate([STREAM[: len(STREAM) - len(meta) - len(stop)]])
    assert b"[DONE]" not in evs
