"""Tests for proxy.providers.gemini_*: OpenAI chat spoken to Gemini generateContent."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.core.errors import GatewayError
from proxy.core.exchange import Usage
from proxy.providers.chain import Chained
from proxy.providers.gemini_answer import error_to_openai, to_chat, usage_of
from proxy.providers.gemini_request import to_gemini
from proxy.providers.gemini_stream import ChatFromGemini
from proxy.providers.messages_stream import MessagesFromChat
from proxy.providers.sse import SSEParser


def convert(body: dict[str, Any]) -> Any:
    return orjson.loads(to_gemini(orjson.dumps(body)))


def test_request_roles_tools_images_and_options() -> None:
    out = convert(
        {
            "model": "chat",
            "messages": [
                {"role": "system", "content": "Be terse."},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Weather in Oslo?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}},
                    ],
                },
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 3}'},
                {"role": "tool", "tool_call_id": "call_1", "content": "plain text"},
            ],
            "tools": [
                {
                    "type": "function",
                    "function": {"name": "get_weather", "parameters": {"type": "object"}},
                }
            ],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "max_tokens": 256,
            "temperature": 0.2,
            "stop": "END",
        }
    )
    assert out["systemInstruction"] == {"parts": [{"text": "Be terse."}]}
    user, model, results = out["contents"]
    assert user["role"] == "user"
    assert user["parts"][1] == {"inlineData": {"mimeType": "image/png", "data": "AAA"}}
    assert model == {
        "role": "model",
        "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}}],
    }
    assert results["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"temp_c": 3}}},
        {"functionResponse": {"name": "get_weather", "response": {"content": "plain text"}}},
    ]
    assert out["generationConfig"] == {
        "maxOutputTokens": 256,
        "temperature": 0.2,
        "stopSequences": ["END"],
    }
    assert out["tools"] == [
        {
            "functionDeclarations": [
                {"name": "get_weather", "parametersJsonSchema": {"type": "object"}}
            ]
        }
    ]
    assert out["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }


def test_request_shapes_gemini_cannot_take_are_400() -> None:
    for body in (
        {"model": "m", "messages": []},
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 3},
        {"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
    ):
        with pytest.raises(GatewayError):
            to_gemini(orjson.dumps(body))


ANSWER = {
    "candidates": [
        {
            "content": {
                "role": "model",
                "parts": [
                    {"text": "thinking...", "thought": True},
                    {"text": "Cold: 3 C."},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}},
                ],
            },
            "finishReason": "STOP",
            "index": 0,
        }
    ],
    "usageMetadata": {
        "promptTokenCount": 52,
        "candidatesTokenCount": 7,
        "thoughtsTokenCount": 40,
        "cachedContentTokenCount": 10,
        "totalTokenCount": 99,
    },
    "modelVersion": "gemini-2.5-flash",
    "responseId": "abc123",
}


def test_whole_answer_as_chat() -> None:
    out = orjson.loads(to_chat(orjson.dumps(ANSWER)))
    choice = out["choices"][0]
    assert choice["message"]["content"] == "Cold: 3 C."
    assert choice["finish_reason"] == "tool_calls"  # STOP with a call is a tool-call turn
    call = choice["message"]["tool_calls"][0]
    assert call["id"] == "call_abc123_0"
    assert orjson.loads(call["function"]["arguments"]) == {"city": "Oslo"}
    assert out["usage"]["prompt_tokens"] == 52 and out["usage"]["completion_tokens"] == 47
    assert out["usage"]["prompt_tokens_details"] == {"cached_tokens": 10}
    assert usage_of(orjson.dumps(ANSWER)) == Usage(52, 47, tokens_cached=10)


@pytest.mark.parametrize(
    ("reason", "finish"), [("MAX_TOKENS", "length"), ("SAFETY", "content_filter"), ("STOP", "stop")]
)
def test_finish_reasons(reason: str, finish: str) -> None:
    body = {"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": reason}]}
    assert orjson.loads(to_chat(orjson.dumps(body)))["choices"][0]["finish_reason"] == finish


def test_blocked_prompt_is_content_filter() -> None:
    body = {"promptFeedback": {"blockReason": "SAFETY"}}
    choice = orjson.loads(to_chat(orjson.dumps(body)))["choices"][0]
    assert (choice["finish_reason"], choice["message"]["content"]) == ("content_filter", None)


def test_google_errors_in_openai_shape() -> None:
    body = b'[{"error":{"code":400,"message":"Invalid JSON payload","status":"INVALID_ARGUMENT"}}]'
    err = orjson.loads(error_to_openai(body))["error"]
    assert (err["message"], err["code"]) == ("Invalid JSON payload", "INVALID_ARGUMENT")
    assert set(err) == {"message", "type", "param", "code"}


def sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\r\n\r\n"


def text_chunk(text: str, **extra: Any) -> dict[str, Any]:
    cand = {"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}
    return {"candidates": [{**cand, **extra}], "responseId": "r1", "modelVersion": "gemini-x"}


STREAM = b"".join(
    [
        sse(text_chunk("Hel")),
        sse(text_chunk("lo")),
        sse(
            {
                "candidates": [
                    {"content": {"parts": [{"functionCall": {"name": "f", "args": {"a": 1}}}]}}
                ],
                "responseId": "r1",
            }
        ),
        sse(
            {
                **text_chunk("", finishReason="STOP"),
                "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 4},
            }
        ),
    ]
)


def translate(pieces: list[bytes], include_usage: bool = True) -> tuple[list[Any], Usage | None]:
    t = ChatFromGemini(include_usage)
    out = b"".join(t.chunk(p) for p in pieces) + t.end()
    evs = [e.data if e.data == b"[DONE]" else orjson.loads(e.data) for e in SSEParser().feed(out)]
    return [e if isinstance(e, bytes) else {**e, "created": 0} for e in evs], t.usage


def test_stream_translated_with_tool_call_finish_and_usage() -> None:
    evs, usage = translate([STREAM])
    assert evs[-1] == b"[DONE]"
    deltas = [e["choices"][0]["delta"] for e in evs[:-1] if e["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert "".join(d.get("content", "") for d in deltas[1:]) == "Hello"
    call = next(d["tool_calls"][0] for d in deltas if "tool_calls" in d)
    assert call["index"] == 0 and call["function"]["name"] == "f"
    assert orjson.loads(call["function"]["arguments"]) == {"a": 1}
    assert [e["choices"][0]["finish_reason"] for e in evs[:-1] if e["choices"]][-1] == "tool_calls"
    assert evs[-2]["choices"] == [] and evs[-2]["usage"]["prompt_tokens"] == 9
    assert usage == Usage(9, 4)
    plain, _ = translate([STREAM], include_usage=False)
    assert all(e == b"[DONE]" or e["choices"] for e in plain)


def test_stream_error_event() -> None:
    evs, _ = translate(
        [
            sse(text_chunk("a")),
            b'data: {"error":{"code":503,"message":"Overloaded","status":"UNAVAILABLE"}}\r\n\r\n',
        ]
    )
    assert evs[-1] == {
        "error": {
            "message": "Overloaded",
            "type": "UNAVAILABLE",
            "param": None,
            "code": "UNAVAILABLE",
        },
        "created": 0,
    }


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=30))
def test_split_at_any_byte_boundary_gives_the_same_events(points: list[int]) -> None:
    ps = sorted(set(points))
    pieces = [STREAM[a:b] for a, b in zip([0, *ps], [*ps, len(STREAM)], strict=True)]
    assert translate(pieces) == translate([STREAM])


def to_messages_events(pieces: list[bytes]) -> tuple[list[Any], Usage | None]:
    chain = Chained(ChatFromGemini(include_usage=True), MessagesFromChat())
    out = b"".join(chain.chunk(p) for p in pieces) + chain.end()
    return [(e.event, orjson.loads(e.data)) for e in SSEParser().feed(out)], chain.usage


def test_gemini_stream_for_a_messages_client() -> None:
    evs, usage = to_messages_events([STREAM])
    names = [n for n, _ in evs]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    blocks = [d["content_block"]["type"] for n, d in evs if n == "content_block_start"]
    assert blocks == ["text", "tool_use"]
    assert evs[-2][1]["delta"]["stop_reason"] == "tool_use"
    assert evs[-2][1]["usage"]["output_tokens"] == 4
    assert usage == Usage(9, 4)


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=30))
def test_chained_translation_split_anywhere_gives_the_same_events(points: list[int]) -> None:
    ps = sorted(set(points))
    pieces = [STREAM[a:b] for a, b in zip([0, *ps], [*ps, len(STREAM)], strict=True)]
    assert to_messages_events(pieces) == to_messages_events([STREAM])
