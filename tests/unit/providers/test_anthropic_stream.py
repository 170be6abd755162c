"""Tests for proxy.providers.anthropic_stream and .anthropic_answer: Messages answers as chat."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from proxy.core.exchange import Usage
from proxy.providers.anthropic_answer import error_to_openai, to_chat, usage_of
from proxy.providers.anthropic_stream import ChatFromMessages
from proxy.providers.sse import SSEParser

# Golden transcript: the tool-use stream of the Messages streaming docs, with a text block
# first (a second block index) and a second tool call.
TRANSCRIPT = (
    b"event: message_start\n"
    b'data: {"type":"message_start","message":{"id":"msg_gw_01","type":"message",'
    b'"role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,'
    b'"stop_sequence":null,"usage":{"input_tokens":410,"cache_read_input_tokens":1200,'
    b'"output_tokens":1}}}\n\n'
    b"event: content_block_start\n"
    b'data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n'
    b"event: ping\n"
    b'data: {"type":"ping"}\n\n'
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Checking."}}\n\n'
    b"event: content_block_stop\n"
    b'data: {"type":"content_block_stop","index":0}\n\n'
    b"event: content_block_start\n"
    b'data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use",'
    b'"id":"toolu_01","name":"get_weather","input":{}}}\n\n'
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}\n\n'
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta",'
    b'"partial_json":"{\\"city\\": \\"Os"}}\n\n'
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"lo\\"}"}}\n\n'
    b"event: content_block_stop\n"
    b'data: {"type":"content_block_stop","index":1}\n\n'
    b"event: content_block_start\n"
    b'data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use",'
    b'"id":"toolu_02","name":"get_time","input":{}}}\n\n'
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{}"}}\n\n'
    b"event: content_block_stop\n"
    b'data: {"type":"content_block_stop","index":2}\n\n'
    b"event: message_delta\n"
    b'data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},'
    b'"usage":{"output_tokens":38}}\n\n'
    b"event: message_stop\n"
    b'data: {"type":"message_stop"}\n\n'
)


def events(out: bytes) -> list[Any]:
    """The client's SSE data payloads, parsed (the [DONE] sentinel kept as bytes)."""
    parsed = SSEParser().feed(out)
    return [ev.data if ev.data == b"[DONE]" else orjson.loads(ev.data) for ev in parsed]


def translate(chunks: list[bytes], include_usage: bool = True) -> tuple[bytes, Usage | None]:
    t = ChatFromMessages(include_usage)
    out = b"".join(t.chunk(c) for c in chunks) + t.end()
    return out, t.usage


def test_stream_text_tools_finish_and_usage() -> None:
    out, usage = translate([TRANSCRIPT])
    evs = events(out)
    assert evs[-1] == b"[DONE]"
    chunks = evs[:-1]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == "msg_gw_01" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[1]["choices"][0]["delta"] == {"content": "Checking."}
    calls = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in chunks
        if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
    ]
    assert calls[0] == {
        "index": 0,
        "id": "toolu_01",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    args0 = "".join(c["function"]["arguments"] for c in calls if c["index"] == 0)
    assert orjson.loads(args0) == {"city": "Oslo"}
    assert [c["id"] for c in calls if "id" in c] == ["toolu_01", "toolu_02"]
    assert "".join(c["function"]["arguments"] for c in calls if c["index"] == 1) == "{}"
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finish[-1] == "tool_calls" and finish.count(None) == len(finish) - 1
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 1610,
        "completion_tokens": 38,
        "total_tokens": 1648,
        "prompt_tokens_details": {"cached_tokens": 1200},
    }
    assert usage == Usage(1610, 38, tokens_cached=1200)


def test_usage_chunk_only_when_asked() -> None:
    out, usage = translate([TRANSCRIPT], include_usage=False)
    assert all(c == b"[DONE]" or c["choices"] for c in events(out))
    assert usage == Usage(1610, 38, tokens_cached=1200)


def test_mid_stream_error_event_ends_in_openai_shape() -> None:
    head = TRANSCRIPT[: TRANSCRIPT.index(b"event: content_block_stop")]
    err = (
        b"event: error\n"
        b'data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    )
    out, _ = translate([head, err, b"event: ping\ndata: {}\n\n"])
    last = events(out)[-1]
    assert last == {
        "error": {
            "message": "Overloaded",
            "type": "overloaded_error",
            "param": None,
            "code": "overloaded_error",
        }
    }


@given(st.lists(st.integers(min_value=0, max_value=len(TRANSCRIPT)), max_size=30))
def test_split_at_any_byte_boundary_gives_the_same_events(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    pieces = [
        TRANSCRIPT[a:b] for a, b in zip([0, *points], [*points, len(TRANSCRIPT)], strict=True)
    ]
    whole, whole_usage = translate([TRANSCRIPT])
    split, split_usage = translate(pieces)
    # `created` is the same second in practice; compare without it to be safe.
    strip = [e if isinstance(e, bytes) else {**e, "created": 0} for e in events(split)]
    assert strip == [e if isinstance(e, bytes) else {**e, "created": 0} for e in events(whole)]
    assert split_usage == whole_usage


MESSAGE = {
    "id": "msg_gw_01",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Oslo"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 410,
        "cache_creation_input_tokens": 5,
        "cache_read_input_tokens": 1200,
        "output_tokens": 38,
    },
}


def test_whole_answer_as_chat_completion() -> None:
    out = orjson.loads(to_chat(orjson.dumps(MESSAGE)))
    assert out["object"] == "chat.completion"
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Checking."
    call = choice["message"]["tool_calls"][0]
    assert call["id"] == "toolu_01"
    assert orjson.loads(call["function"]["arguments"]) == {"city": "Oslo"}
    assert out["usage"]["prompt_tokens"] == 1615
    assert out["usage"]["prompt_tokens_details"] == {"cached_tokens": 1200}
    assert usage_of(orjson.dumps(MESSAGE)) == Usage(1615, 38, 1200, tokens_cache_write=5)


def test_stop_reasons_map_to_finish_reasons() -> None:
    for stop, finish in [
        ("end_turn", "stop"),
        ("max_tokens", "length"),
        ("refusal", "content_filter"),
        ("weird", "stop"),
    ]:
        body = orjson.dumps({**MESSAGE, "content": [], "stop_reason": stop})
        choice = orjson.loads(to_chat(body))["choices"][0]
        assert choice["finish_reason"] == finish
        assert choice["message"]["content"] is None


def test_error_body_in_openai_shape() -> None:
    body = b'{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: bad"},"request_id":"r"}'
    assert orjson.loads(error_to_openai(body)) == {
        "error": {
            "message": "max_tokens: bad",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_request_error",
        }
    }
    assert orjson.loads(error_to_openai(b"<html>"))["error"]["type"] == "api_error"


def test_a_stream_ending_after_its_finish_without_message_stop_still_ends_cleanly() -> None:
    cut = TRANSCRIPT[: TRANSCRIPT.index(b"event: message_stop")]
    out, usage = translate([cut])
    assert events(out)[-1] == b"[DONE]"
    assert usage == Usage(1610, 38, tokens_cached=1200)
    broken = TRANSCRIPT[: TRANSCRIPT.index(b"event: message_delta")]
    out, _ = translate([broken])
    assert b"[DONE]" not in out  # broke before the finish: the relay ends it with an error


def test_thinking_reaches_chat_clients_as_reasoning_content() -> None:
    thinking = (
        b"event: content_block_start\n"
        b'data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}\n\n'
        b"event: content_block_delta\n"
        b'data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Let me see"}}\n\n'
        b"event: content_block_delta\n"
        b'data: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"abc"}}\n\n'
    )
    start_end = TRANSCRIPT.index(b"event: content_block_start")
    out, _ = translate([TRANSCRIPT[:start_end] + thinking + TRANSCRIPT[start_end:]])
    deltas = [e["choices"][0]["delta"] for e in events(out) if isinstance(e, dict) and e["choices"]]
    assert {"reasoning_content": "Let me see"} in deltas
    assert not any("signature" in str(d) for d in deltas)
    blocks: Any = MESSAGE["content"]
    thinking_block = {"type": "thinking", "thinking": "hmm", "signature": "s"}
    whole = {**MESSAGE, "content": [thinking_block, *blocks]}
    message = orjson.loads(to_chat(orjson.dumps(whole)))["choices"][0]["message"]
    assert message["reasoning_content"] == "hmm" and message["content"] == "Checking."
