"""Replay conversions: a JSON chat answer as chunk events, a recorded stream as JSON."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from proxy.cache.replay import DONE, adapt_usage, complete, to_body, to_stream

ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 7,
    "model": "m",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello there"},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
}


def events(chunks: tuple[bytes, ...] | list[bytes]) -> list[bytes]:
    return [e for e in b"".join(chunks).split(b"\n\n") if e]


def chunk(delta: dict[str, object], finish: str | None = None, index: int = 0) -> bytes:
    obj = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 7,
        "model": "m",
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def test_a_json_answer_becomes_a_valid_chunk_stream() -> None:
    chunks = to_stream(orjson.dumps(ANSWER), with_usage=True)
    assert chunks is not None
    evs = events(chunks)
    assert evs[-1] == b"data: [DONE]"
    first = orjson.loads(evs[0][6:])
    assert first["object"] == "chat.completion.chunk"
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": "Hello there"}
    assert orjson.loads(evs[1][6:])["choices"][0]["finish_reason"] == "stop"
    assert orjson.loads(evs[2][6:]) == {
        **orjson.loads(evs[2][6:]),
        "choices": [],
        "usage": ANSWER["usage"],
    }
    without = to_stream(orjson.dumps(ANSWER), with_usage=False)
    assert without is not None and len(without) == len(chunks) - 1
    assert complete(chunks)


def test_round_trip_keeps_the_answer() -> None:
    chunks = to_stream(orjson.dumps(ANSWER), with_usage=True)
    assert chunks is not None
    body = to_body(chunks)
    assert body is not None
    assert orjson.loads(body) == ANSWER


def test_tool_calls_are_joined_from_their_pieces() -> None:
    call = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "f", "arguments": '{"a"'},
    }
    more = {"index": 0, "function": {"arguments": ": 1}"}}
    chunks = [
        chunk({"role": "assistant", "content": None, "tool_calls": [call]}),
        chunk({"tool_calls": [more]}),
        chunk({}, "tool_calls"),
        DONE,
    ]
    body = to_body(chunks)
    assert body is not None
    msg = orjson.loads(body)["choices"][0]
    assert msg["finish_reason"] == "tool_calls"
    assert msg["message"]["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    ]
    again = to_stream(body, with_usage=False)
    assert again is not None
    assert to_body(again) == body


@given(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=8), st.integers(1, 40))
def test_content_split_anywhere_assembles_to_the_same_text(parts: list[str], cut: int) -> None:
    stream = b"".join([chunk({"role": "assistant"}), *(chunk({"content": p}) for p in parts)])
    stream += chunk({}, "stop") + DONE
    # The recording is cut wherever the network cut it: events may straddle chunks.
    pieces = [stream[i : i + cut] for i in range(0, len(stream), cut)]
    body = to_body(pieces)
    assert body is not None
    assert orjson.loads(body)["choices"][0]["message"]["content"] == "".join(parts)
    assert complete(pieces)


def test_incomplete_streams_are_not_complete() -> None:
    assert not complete([])
    assert not complete([chunk({"content": "a"})])
    assert not complete([chunk({"content": "a"}), b'data: {"error": {"message": "x"}}\n\n'])
    assert complete([chunk({"content": "a"}), b"data: [DONE]", b"\n\n"])


def test_usage_chunk_added_or_cut_for_the_client() -> None:
    usage_ev = b'data: {"id":"chatcmpl-1","choices":[],"usage":{"prompt_tokens":1}}\n\n'
    recorded = (chunk({"content": "a"}) + chunk({}, "stop"), usage_ev + DONE)
    assert adapt_usage(recorded, True, True, None) is recorded
    cut = adapt_usage(recorded, True, False, None)
    assert b'"usage"' not in b"".join(cut)
    assert events(cut)[-1] == b"data: [DONE]" and len(events(cut)) == 3
    plain = (chunk({"content": "a"}), chunk({}, "stop"), DONE)
    added = adapt_usage(plain, False, True, b'{"prompt_tokens":1}')
    usage = orjson.loads(events(added)[-2][6:])
    assert usage["choices"] == [] and usage["usage"] == {"prompt_tokens": 1}
    assert usage["id"] == "chatcmpl-1"
    assert added[:2] == plain[:2] and added[-1] == DONE


def test_not_a_chat_answer_is_not_converted() -> None:
    assert to_stream(b'{"data": []}', with_usage=False) is None
    assert to_stream(b"nope", with_usage=False) is None
    assert to_body([b": keepalive\n\n", DONE]) is None
