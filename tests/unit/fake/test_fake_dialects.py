"""Unit tests for the fake provider's pure builders (OpenAI, Anthropic) and Behaviour."""

from __future__ import annotations

import argparse
import base64
import struct

import orjson
import pytest

from proxy.fake import anthropic_dialect as anth
from proxy.fake import openai_dialect as oai
from proxy.fake.behaviour import Behaviour, split_text
from proxy.fake.server import add_arguments, behaviour_from_args

CHAT = orjson.dumps({"model": "gpt-x", "messages": [{"role": "user", "content": "hi"}]})


def _reply(**kw: object) -> oai.Reply:
    base = {"rid": "r1", "model": "gpt-x", "pieces": ("a", "b", "c"), "prompt_tokens": 7}
    return oai.Reply(**{**base, **kw})  # type: ignore[arg-type]


def _data(event: bytes) -> bytes:
    assert event.startswith(b"data: ")
    assert event.endswith(b"\n\n")
    assert event.count(b"\n") == 2  # one line, then the blank line
    return event[len(b"data: ") : -2]


def _all(events: oai.Events) -> list[bytes]:
    return [*events.head, *events.content, *events.tail]


@pytest.mark.parametrize("include_usage", [False, True])
def test_chat_stream_follows_the_reference(include_usage: bool) -> None:
    events = oai.chat_events(_reply(created=123, include_usage=include_usage))
    raw = _all(events)
    assert raw[-1] == b"data: [DONE]\n\n"
    chunks = [orjson.loads(_data(e)) for e in raw[:-1]]
    for chunk, event in zip(chunks, raw, strict=False):
        assert _data(event) == orjson.dumps(chunk)  # compact JSON, as orjson writes it
        assert chunk["id"] == "chatcmpl-r1"
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["created"] == 123
        assert chunk["model"] == "gpt-x"
        assert ("usage" in chunk) is include_usage
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    contents = [c["choices"][0]["delta"]["content"] for c in chunks[1:4]]
    assert contents == ["a", "b", "c"]
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:4])
    finish = chunks[4]
    assert finish["choices"] == [
        {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    ]
    if include_usage:
        assert all(c["usage"] is None for c in chunks[:5])
        assert len(chunks) == 6
        assert chunks[5]["choices"] == []
        assert chunks[5]["usage"] == {
            "prompt_tokens": 7,
            "completion_tokens": 3,
            "total_tokens": 10,
        }
    else:
        assert len(chunks) == 5
        assert all(c["choices"] for c in chunks)
    assert len(events.content) == 3


def test_chat_json_has_every_required_key() -> None:
    body = orjson.loads(oai.chat_json(_reply(created=5)))
    assert {"id", "object", "created", "model", "choices", "usage"} <= body.keys()
    assert body["object"] == "chat.completion"
    choice = body["choices"][0]
    assert {"index", "message", "logprobs", "finish_reason"} <= choice.keys()
    assert choice["message"]["content"] == "abc"
    assert choice["message"]["refusal"] is None
    assert body["usage"]["total_tokens"] == 10


def test_legacy_completion_stream_and_json() -> None:
    events = oai.completion_events(_reply(include_usage=True))
    raw = _all(events)
    assert events.head == ()
    assert raw[-1] == oai.DONE
    chunks = [orjson.loads(_data(e)) for e in raw[:-1]]
    assert all(c["object"] == "text_completion" for c in chunks)
    assert [c["choices"][0]["text"] for c in chunks[:3]] == ["a", "b", "c"]
    assert chunks[3]["choices"][0]["finish_reason"] == "stop"
    assert chunks[4]["choices"] == []
    body = orjson.loads(oai.completion_json(_reply()))
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"] == "abc"


def test_stream_options_without_stream_is_the_reference_400() -> None:
    body = orjson.dumps({"model": "m", "messages": [{}], "stream_options": {"include_usage": True}})
    with pytest.raises(oai.Invalid) as info:
        oai.parse_chat(body)
    assert info.value.status == 400
    assert orjson.loads(info.value.body) == {
        "error": {
            "message": "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "type": "invalid_request_error",
            "param": "stream_options",
            "code": None,
        }
    }


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"[1, 2]", None),
        (orjson.dumps({"messages": [{}]}), None),
        (orjson.dumps({"model": "m"}), "messages"),
        (orjson.dumps({"model": "m", "messages": []}), "messages"),
        (orjson.dumps({"model": 3, "messages": [{}]}), "model"),
        (orjson.dumps({"model": "m", "messages": [{}], "stream": "yes"}), "stream"),
    ],
)
def test_bad_chat_requests_are_openai_shaped_400(body: bytes, param: str | None) -> None:
    with pytest.raises(oai.Invalid) as info:
        oai.parse_chat(body)
    assert info.value.status == 400
    error = orjson.loads(info.value.body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


def test_parse_chat_reads_stream_and_usage_flags() -> None:
    body = orjson.dumps(
        {"model": "m", "messages": [{}], "stream": True, "stream_options": {"include_usage": True}}
    )
    assert oai.parse_chat(body) == oai.Generation(model="m", stream=True, include_usage=True)
    assert oai.parse_chat(CHAT) == oai.Generation(model="gpt-x", stream=False, include_usage=False)


def test_answer_routes_by_path_and_takes_the_model_from_azure_paths() -> None:
    base = _reply(model="")
    body = orjson.dumps({"messages": [{}]})
    out = oai.answer("POST", "/openai/deployments/dep1/chat/completions", body, base, ())
    assert isinstance(out, bytes)
    assert orjson.loads(out)["model"] == "dep1"
    with pytest.raises(oai.Invalid) as info:
        oai.answer("POST", "/v1/nothing", CHAT, base, ())
    assert info.value.status == 404
    models = oai.answer("GET", "/v1/models", b"", base, ("a", "b"))
    assert isinstance(models, bytes)
    assert [m["id"] for m in orjson.loads(models)["data"]] == ["a", "b"]


@pytest.mark.parametrize("dims", [8, 3, 100])
def test_base64_embeddings_decode_to_float32_of_the_right_length(dims: int) -> None:
    request: dict[str, object] = {"model": "e", "input": ["x", "y"], "encoding_format": "base64"}
    if dims != 8:
        request["dimensions"] = dims
    req = oai.parse_embeddings(orjson.dumps(request))
    body = orjson.loads(oai.embeddings_json(req, 4))
    assert [d["index"] for d in body["data"]] == [0, 1]
    for item, key in zip(body["data"], (b"x", b"y"), strict=True):
        raw = base64.b64decode(item["embedding"])
        assert len(raw) == 4 * dims
        values = list(struct.unpack(f"<{dims}f", raw))
        assert values == oai.embedding_vector(key, dims)  # exact in float32
    assert body["usage"] == {"prompt_tokens": 4, "total_tokens": 4}


def test_float_embeddings_are_deterministic_lists() -> None:
    req = oai.parse_embeddings(orjson.dumps({"model": "e", "input": "hello"}))
    first = orjson.loads(oai.embeddings_json(req, 1))["data"][0]["embedding"]
    again = orjson.loads(oai.embeddings_json(req, 1))["data"][0]["embedding"]
    assert first == again
    assert len(first) == 8
    assert all(isinstance(v, float) and -1.0 <= v <= 1.0 for v in first)


@pytest.mark.parametrize(
    "request_body",
    [
        {"model": "e"},
        {"model": "e", "input": []},
        {"model": "e", "input": "x", "encoding_format": 1},
    ],
)
def test_bad_embedding_requests_are_400(request_body: dict[str, object]) -> None:
    with pytest.raises(oai.Invalid):
        oai.parse_embeddings(orjson.dumps(request_body))


def test_default_openai_errors_fit_the_status() -> None:
    rate = orjson.loads(oai.default_error(429, "gpt-x"))["error"]
    assert rate["type"] == "requests"
    assert rate["code"] == "rate_limit_exceeded"
    assert orjson.loads(oai.default_error(500))["error"]["type"] == "server_error"
    assert orjson.loads(oai.default_error(502))["error"]["type"] == "server_error"
    assert oai.default_error(307) == b""


def _anthropic_events(raw: list[bytes]) -> list[tuple[str, dict[str, object]]]:
    out = []
    for event in raw:
        assert event.endswith(b"\n\n")
        name_line, data_line = event[:-2].split(b"\n")
        assert name_line.startswith(b"event: ")
        assert data_line.startswith(b"data: ")
        data = orjson.loads(data_line[len(b"data: ") :])
        out.append((name_line[len(b"event: ") :].decode(), data))
    return out


def test_anthropic_stream_events_carry_matching_event_and_type() -> None:
    events = anth.message_events(_reply(model="claude-x"))
    parsed = _anthropic_events(_all(events))
    for name, data in parsed:
        assert data["type"] == name
    names = [name for name, _ in parsed]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 3,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = parsed[0][1]["message"]
    assert isinstance(start, dict)
    assert start["model"] == "claude-x"
    assert start["usage"]["input_tokens"] == 7
    assert start["stop_reason"] is None
    deltas = [d["delta"] for n, d in parsed if n == "content_block_delta"]
    assert deltas == [{"type": "text_delta", "text": t} for t in ("a", "b", "c")]
    message_delta = parsed[-2][1]
    assert message_delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert message_delta["usage"] == {"output_tokens": 3}
    assert len(events.content) == 3


def test_anthropic_message_json_and_errors() -> None:
    body = orjson.loads(anth.message_json(_reply(model="claude-x")))
    assert body["type"] == "message"
    assert body["content"] == [{"type": "text", "text": "abc"}]
    assert body["stop_reason"] == "end_turn"
    assert body["usage"]["input_tokens"] == 7
    assert body["usage"]["output_tokens"] == 3
    overloaded = orjson.loads(anth.default_error(529, "req_1"))
    assert overloaded["type"] == "error"
    assert overloaded["error"]["type"] == "overloaded_error"
    assert overloaded["request_id"] == "req_1"
    assert orjson.loads(anth.default_error(429, "r"))["error"]["type"] == "rate_limit_error"


def test_anthropic_requires_max_tokens() -> None:
    with pytest.raises(oai.Invalid) as info:
        anth.parse_messages(orjson.dumps({"model": "c", "messages": []}), "req_1")
    error = orjson.loads(info.value.body)
    assert error["error"] == {
        "type": "invalid_request_error",
        "message": "max_tokens: Field required",
    }
    ok = anth.parse_messages(
        orjson.dumps({"model": "c", "messages": [], "max_tokens": 9, "stream": True}), "r"
    )
    assert ok == anth.MessagesRequest(model="c", stream=True)


def test_behaviour_json_round_trip() -> None:
    b = Behaviour(
        status=429,
        headers=(("x-a", "1"),),
        error_body=b'{"error":{}}',
        retry_after="2",
        chunks=3,
        fault="reset_mid_stream",
        tokens_per_s=50.0,
    )
    assert Behaviour.from_json(orjson.loads(orjson.dumps(b.to_json()))) == b
    assert Behaviour.from_json({}) == Behaviour()
    assert Behaviour.from_json({"headers": {"x-b": "2"}}).headers == (("x-b", "2"),)
    assert Behaviour.from_json({"error_body": {"e": 1}}).error_body == b'{"e":1}'
    assert Behaviour(tokens_per_s=4.0).chunk_interval_s == 0.25


@pytest.mark.parametrize(
    "obj",
    [
        {"bogus": 1},
        {"status": "200"},
        {"status": True},
        {"status": 99},
        {"latency_s": -1},
        {"latency_s": "1"},
        {"chunks": 1.5},
        {"chunks": None},
        {"fault": "explode"},
        {"tokens_per_s": 0},
        {"headers": [["only-name"]]},
        {"headers": "x"},
        {"error_body": 5},
        {"error_rate": 2},
        {"status": 101},
    ],
)
def test_behaviour_from_json_rejects_bad_input(obj: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"\w"):
        Behaviour.from_json(obj)


def test_behaviour_rejects_non_finite_numbers() -> None:
    with pytest.raises(ValueError, match="latency_s"):
        Behaviour(latency_s=float("nan"))
    with pytest.raises(ValueError, match="tokens_per_s"):
        Behaviour(tokens_per_s=float("inf"))


def test_split_text_is_deterministic_and_complete() -> None:
    assert split_text("", 3) == ("tok0", " tok1", " tok2")
    assert "".join(split_text("hello world", 4)) == "hello world"
    assert len(split_text("hello world", 4)) == 4
    assert split_text("abc", 0) == ()


def test_cli_flags_build_a_behaviour_and_tolerate_existing_flags() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=9999)  # the caller's own flag wins
    add_arguments(parser)
    ns = parser.parse_args(
        ["--latency", "0.5", "--chunks", "7", "--fault", "hang", "--header", "x-a: 1"]
    )
    assert ns.port == 9999
    assert ns.dialect == "openai"
    assert behaviour_from_args(ns) == Behaviour(
        latency_s=0.5, chunks=7, fault="hang", headers=(("x-a", "1"),)
    )
    assert behaviour_from_args(parser.parse_args([])) == Behaviour()
