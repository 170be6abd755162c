"""Tests for proxy.providers.messages_*: Messages clients served from OpenAI chat upstreams."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.core.errors import GatewayError
from proxy.core.exchange import Usage
from proxy.providers.anthropic_usage import MessagesUsageObserver
from proxy.providers.messages_answer import error_to_anthropic, to_message
from proxy.providers.messages_request import to_chat
from proxy.providers.messages_stream import MessagesFromChat
from proxy.providers.sse import SSEParser
from proxy.providers.token_estimate import estimate_input_tokens


def convert(body: dict[str, Any], model: str | None = "gpt-x", usage: bool = True) -> Any:
    return orjson.loads(to_chat(orjson.dumps(body), model, usage))


def test_request_system_tools_images_and_tool_results() -> None:
    out = convert(
        {
            "model": "chat",
            "max_tokens": 100,
            "system": [{"type": "text", "text": "be brief"}],
            "stop_sequences": ["END"],
            "stream": True,
            "top_k": 5,
            "metadata": {"user_id": "u1"},
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "look"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": "AAA"},
                        },
                    ],
                },
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "hmm", "signature": "s"},
                        {"type": "text", "text": "calling"},
                        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "42"},
                        {"type": "text", "text": "and?"},
                    ],
                },
            ],
            "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        }
    )
    assert out["model"] == "gpt-x"
    assert out["max_tokens"] == 100
    assert out["stop"] == ["END"]
    assert out["user"] == "u1"
    assert out["stream_options"] == {"include_usage": True}
    assert "top_k" not in out
    system, user, assistant, tool, text = out["messages"]
    assert system == {"role": "system", "content": "be brief"}
    assert user["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,AAA"},
    }
    assert assistant["content"] == "calling"
    assert assistant["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"a":1}'}
    assert tool == {"role": "tool", "tool_call_id": "toolu_1", "content": "42"}
    assert text == {"role": "user", "content": "and?"}
    assert out["tools"] == [
        {
            "type": "function",
            "function": {"name": "f", "parameters": {"type": "object"}, "description": "d"},
        }
    ]
    assert out["tool_choice"] == "required"
    assert out["parallel_tool_calls"] is False


def test_usage_option_only_on_streams_and_when_allowed() -> None:
    body = {"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    assert "stream_options" not in convert(body)
    assert "stream_options" not in convert({**body, "stream": True}, usage=False)


@pytest.mark.parametrize(
    "body",
    [
        {"model": "c", "messages": []},
        {"model": "c", "messages": [{"role": "system", "content": "x"}]},
        {"model": "c", "messages": [{"role": "user", "content": [{"type": "document"}]}]},
        {"model": "c", "messages": [{"role": "user", "content": 5}]},
    ],
)
def test_request_shapes_chat_cannot_take_are_400(body: dict[str, Any]) -> None:
    with pytest.raises(GatewayError) as caught:
        to_chat(orjson.dumps(body), None, True)
    assert caught.value.status == 400


def test_whole_answer_as_message() -> None:
    chat = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-x",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "ok",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"a": 1}'},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 4,
            "prompt_tokens_details": {"cached_tokens": 6},
        },
    }
    msg = orjson.loads(to_message(orjson.dumps(chat)))
    assert msg["type"] == "message" and msg["role"] == "assistant"
    assert msg["content"] == [
        {"type": "text", "text": "ok"},
        {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}},
    ]
    assert msg["stop_reason"] == "tool_use"
    assert msg["usage"] == {"input_tokens": 4, "cache_read_input_tokens": 6, "output_tokens": 4}


def test_error_as_anthropic_error() -> None:
    body = orjson.dumps(
        {"error": {"message": "bad thing", "type": "x", "param": None, "code": None}}
    )
    assert orjson.loads(error_to_anthropic(400, body)) == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "bad thing"},
    }
    assert orjson.loads(error_to_anthropic(529, b"oops"))["error"]["type"] == "overloaded_error"


def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    obj = {
        "id": "chatcmpl-9",
        "object": "chat.completion.chunk",
        "model": "gpt-x",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(obj) + b"\n\n"


# A chat stream as OpenAI sends it: role, text, two tool calls streamed, finish, usage, DONE.
CHAT_STREAM = b"".join(
    [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Let me "}),
        chunk({"content": "check."}),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "f", "arguments": ""},
                    }
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": " 1}"}}]}),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "call_b",
                        "type": "function",
                        "function": {"name": "g", "arguments": "{}"},
                    }
                ]
            }
        ),
        chunk({}, "tool_calls"),
        b'data: {"id":"chatcmpl-9","object":"chat.completion.chunk","model":"gpt-x","choices":[],'
        b'"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}\n\n',
        b"data: [DONE]\n\n",
    ]
)


def translate(pieces: list[bytes]) -> tuple[list[tuple[str | None, Any]], Usage | None]:
    t = MessagesFromChat()
    out = b"".join(t.chunk(p) for p in pieces) + t.end()
    return [(ev.event, orjson.loads(ev.data)) for ev in SSEParser().feed(out)], t.usage


def test_stream_translated_to_messages_events() -> None:
    evs, usage = translate([CHAT_STREAM])
    names = [name for name, _ in evs]
    assert names[0] == "message_start"
    assert names[-2:] == ["message_delta", "message_stop"]
    assert all(name == data["type"] for name, data in evs)
    starts = [d for n, d in evs if n == "content_block_start"]
    assert [s["content_block"]["type"] for s in starts] == ["text", "tool_use", "tool_use"]
    assert [s["index"] for s in starts] == [0, 1, 2]
    assert starts[1]["content_block"] == {
        "type": "tool_use",
        "id": "call_a",
        "name": "f",
        "input": {},
    }
    deltas = [d for n, d in evs if n == "content_block_delta"]
    text = "".join(d["delta"]["text"] for d in deltas if d["delta"]["type"] == "text_delta")
    assert text == "Let me check."
    json1 = "".join(
        d["delta"]["partial_json"]
        for d in deltas
        if d["index"] == 1 and "partial_json" in d["delta"]
    )
    assert orjson.loads(json1) == {"a": 1}
    stops = [d["index"] for n, d in evs if n == "content_block_stop"]
    assert stops == [0, 1, 2]
    delta = evs[-2][1]
    assert delta["delta"]["stop_reason"] == "tool_use"
    assert delta["usage"]["output_tokens"] == 7 and delta["usage"]["input_tokens"] == 12
    assert usage == Usage(12, 7)


def test_upstream_error_mid_stream_becomes_an_error_event() -> None:
    evs, _ = translate([chunk({"content": "a"}), b'data: {"error": {"message": "boom"}}\n\n'])
    assert evs[-1] == (
        "error",
        {"type": "error", "error": {"type": "api_error", "message": "boom"}},
    )


def cut(data: bytes, points: list[int]) -> list[bytes]:
    ps = sorted({p for p in points if 0 <= p <= len(data)})
    return [data[a:b] for a, b in zip([0, *ps], [*ps, len(data)], strict=True)]


@given(st.lists(st.integers(min_value=0, max_value=len(CHAT_STREAM)), max_size=30))
def test_split_at_any_byte_boundary_gives_the_same_events(points: list[int]) -> None:
    assert translate(cut(CHAT_STREAM, points)) == translate([CHAT_STREAM])


MESSAGES_STREAM = (
    b"event: message_start\n"
    b'data: {"type":"message_start","message":{"id":"m","type":"message","role":"assistant",'
    b'"content":[],"usage":{"input_tokens":20,"cache_read_input_tokens":5,"output_tokens":1}}}\n\n'
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}\n\n'
    b"event: message_delta\n"
    b'data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":9}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)


@given(st.lists(st.integers(min_value=0, max_value=len(MESSAGES_STREAM)), max_size=20))
def test_pass_through_observer_keeps_bytes_and_reads_usage(points: list[int]) -> None:
    obs = MessagesUsageObserver()
    out = b"".join(obs.chunk(p) for p in cut(MESSAGES_STREAM, points))
    assert out == MESSAGES_STREAM
    assert obs.usage == Usage(25, 9, tokens_cached=5)


def test_token_estimate_counts_text_not_structure() -> None:
    small = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "x" * 40}]})
    assert estimate_input_tokens(small) == 11  # "x" * 40 and "user"
    assert estimate_input_tokens(b"nope") == 0


def test_a_chat_stream_without_done_is_closed_after_its_finish_reason() -> None:
    no_done = CHAT_STREAM[: CHAT_STREAM.index(b"data: [DONE]")]
    evs, usage = translate([no_done])
    assert [n for n, _ in evs][-2:] == ["message_delta", "message_stop"]
    assert usage == Usage(12, 7)
    broken = CHAT_STREAM[: CHAT_STREAM.index(b'"finish_reason": "tool_calls"'.replace(b" ", b""))]
    evs, _ = translate([broken[: broken.rfind(b"data: ")]])
    assert "message_stop" not in [n for n, _ in evs]
