"""OpenAI Responses API wire format for the fake provider: a JSON `response` and its events."""

from __future__ import annotations

from dataclasses import replace

import orjson

from proxy.fake.openai_dialect import Events, Reply, parse_object


def _usage(r: Reply) -> dict[str, object]:
    out = len(r.pieces)
    return {
        "input_tokens": r.prompt_tokens,
        "input_tokens_details": {"cached_tokens": r.cached_tokens},
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": r.prompt_tokens + out,
    }


def _response(r: Reply, status: str, text: str | None) -> dict[str, object]:
    output: list[object] = []
    if text is not None:
        part = {"type": "output_text", "text": text, "annotations": []}
        item = {"id": f"msg_{r.rid}", "type": "message", "role": "assistant", "status": "completed"}
        output.append({**item, "content": [part]})
    return {
        "id": f"resp_{r.rid}",
        "object": "response",
        "created_at": r.created,
        "status": status,
        "model": r.model,
        "output": output,
        "usage": _usage(r) if status == "completed" else None,
    }


def _event(seq: int, kind: str, fields: dict[str, object]) -> bytes:
    data = orjson.dumps({"type": kind, "sequence_number": seq, **fields})
    return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"


def response_events(r: Reply) -> Events:
    """created, in_progress, output_text deltas, completed (with usage); no [DONE]."""
    head = (
        _event(0, "response.created", {"response": _response(r, "in_progress", None)}),
        _event(1, "response.in_progress", {"response": _response(r, "in_progress", None)}),
    )
    content = tuple(
        _event(
            2 + i,
            "response.output_text.delta",
            {"item_id": f"msg_{r.rid}", "output_index": 0, "content_index": 0, "delta": p},
        )
        for i, p in enumerate(r.pieces)
    )
    done = _response(r, "completed", "".join(r.pieces))
    tail = (_event(2 + len(r.pieces), "response.completed", {"response": done}),)
    return Events(head, content, tail)


def answer(body: bytes, base: Reply) -> bytes | Events:
    """`POST /v1/responses`: the whole `response`, or its event stream."""
    obj = parse_object(body)
    r = replace(base, model=str(obj.get("model", "")))
    if obj.get("stream") is True:
        return response_events(r)
    return orjson.dumps(_response(r, "completed", "".join(r.pieces)))


def answer_request(
    method: str, path: str, body: bytes, base: Reply, models: tuple[str, ...]
) -> bytes | Events:
    """`answer` with the signature of the other dialects' answer."""
    del method, path, models
    return answer(body, base)
