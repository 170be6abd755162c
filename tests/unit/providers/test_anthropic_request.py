"""Tests for proxy.providers.anthropic_request: OpenAI chat bodies as Messages bodies."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from proxy.core.errors import GatewayError
from proxy.providers.anthropic_request import DEFAULT_MAX_TOKENS, to_messages


def convert(body: dict[str, Any], model: str | None = "claude-x") -> dict[str, Any]:
    out = orjson.loads(to_messages(orjson.dumps(body), model))
    assert isinstance(out, dict)
    return out


def test_system_lifted_and_max_tokens_filled() -> None:
    out = convert(
        {
            "model": "chat",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "developer", "content": "and kind"},
                {"role": "user", "content": "hi"},
            ],
        }
    )
    assert out["model"] == "claude-x"
    assert out["system"] == [
        {"type": "text", "text": "be brief"},
        {"type": "text", "text": "and kind"},
    ]
    assert out["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert out["max_tokens"] == DEFAULT_MAX_TOKENS


def test_options_translated() -> None:
    out = convert(
        {
            "model": "chat",
            "messages": [{"role": "user", "content": "hi"}],
            "max_completion_tokens": 50,
            "stop": "END",
            "temperature": 1.7,
            "top_p": 0.5,
            "stream": True,
            "stream_options": {"include_usage": True},
            "user": "u-1",
            "seed": 4,
        }
    )
    assert out["max_tokens"] == 50
    assert out["stop_sequences"] == ["END"]
    assert out["temperature"] == 1.0
    assert out["top_p"] == 0.5
    assert out["stream"] is True
    assert out["metadata"] == {"user_id": "u-1"}
    assert "seed" not in out and "stream_options" not in out


def test_client_model_kept_without_upstream_model() -> None:
    assert (
        convert({"model": "chat", "messages": [{"role": "user", "content": "x"}]}, None)["model"]
        == "chat"
    )


def test_images_as_base64_and_url_blocks() -> None:
    out = convert(
        {
            "model": "chat",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is this"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
                        {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}},
                    ],
                }
            ],
        }
    )
    blocks = out["messages"][0]["content"]
    assert blocks[1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"},
    }
    assert blocks[2] == {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}}


def test_tools_tool_calls_and_tool_results() -> None:
    out = convert(
        {
            "model": "chat",
            "messages": [
                {"role": "user", "content": "weather in Oslo and Bergen?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
                        },
                        {
                            "id": "call_2",
                            "type": "function",
                            "function": {"name": "weather", "arguments": "not json"},
                        },
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "3C"},
                {"role": "tool", "tool_call_id": "call_2", "content": "5C"},
                {"role": "user", "content": "thanks"},
            ],
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "weather",
                        "description": "forecast",
                        "parameters": {
                            "type": "object",
                            "properties": {"city": {"type": "string"}},
                        },
                    },
                },
                {"type": "function", "function": {"name": "now"}},
            ],
            "tool_choice": "required",
            "parallel_tool_calls": False,
        }
    )
    assert out["tools"][0]["input_schema"]["properties"]["city"] == {"type": "string"}
    assert out["tools"][0]["description"] == "forecast"
    assert out["tools"][1]["input_schema"] == {"type": "object", "properties": {}}
    assert out["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    user, assistant, results = out["messages"]
    assert user["role"] == "user"
    assert assistant["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Oslo"}},
        {"type": "tool_use", "id": "call_2", "name": "weather", "input": {}},
    ]
    # Tool results lead one user turn, text after them.
    assert results["role"] == "user"
    assert [b["type"] for b in results["content"]] == ["tool_result", "tool_result", "text"]
    assert results["content"][0] == {
        "type": "tool_result",
        "tool_use_id": "call_1",
        "content": "3C",
    }


def test_named_tool_choice() -> None:
    out = convert(
        {
            "model": "chat",
            "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": {"type": "function", "function": {"name": "f"}},
        }
    )
    assert out["tool_choice"] == {"type": "tool", "name": "f"}


@pytest.mark.parametrize(
    "body",
    [
        {"model": "chat", "messages": []},
        {"model": "chat", "messages": "hi"},
        {"model": "chat", "messages": [{"role": "system", "content": "only system"}]},
        {"model": "chat", "messages": [{"role": "wizard", "content": "x"}]},
        {"model": "chat", "messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
        {"model": "chat", "messages": [{"role": "user", "content": "x"}], "n": 2},
        {"model": "chat", "messages": [{"role": "user", "content": "x"}], "tools": [{"x": 1}]},
    ],
)
def test_shapes_messages_cannot_take_are_400(body: dict[str, Any]) -> None:
    with pytest.raises(GatewayError) as caught:
        to_messages(orjson.dumps(body), "m")
    assert caught.value.status == 400
