"""Tests for proxy.providers.responses_ids: the id a request continues, the id an answer makes."""

from __future__ import annotations

from proxy.providers.responses_ids import created_id, previous_response_id


def test_previous_response_id() -> None:
    assert previous_response_id(b'{"model":"m","previous_response_id":"resp_1"}') == "resp_1"
    assert previous_response_id(b'{"model":"m","input":"previous_response_id"}') is None
    assert previous_response_id(b'{"previous_response_id": null}') is None
    assert previous_response_id(b'{"previous_response_id": ') is None
    assert previous_response_id(b'{"model":"m"}') is None


def test_created_id_from_a_whole_answer_and_a_stream_opening() -> None:
    assert created_id(b'{"id": "resp_abc", "object": "response", "output": []}') == "resp_abc"
    event = (
        b"event: response.created\n"
        b'data: {"type":"response.created","sequence_number":0,'
        b'"response":{"id":"resp_s1","status":"in_progress"}}\n\n'
    )
    assert created_id(event) == "resp_s1"
    assert created_id(b'{"object": "response"}') is None
