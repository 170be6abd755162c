"""Tests for proxy.providers.sse: WHATWG event-stream parsing, chunk-split invariance, size bounds."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.providers.sse import SSEEvent, SSEParser, is_done

# Recorded shape: reference/protocols.md section 1.4 (tool-call stream with include_usage).
OPENAI_STREAM = (
    b'data: {"id":"chatcmpl-gw-7f3a","object":"chat.completion.chunk","created":1767225600,'
    b'"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"role":"assistant","content":null,'
    b'"tool_calls":[{"index":0,"id":"call_A1","type":"function","function":{"name":"get_weather",'
    b'"arguments":""}}]},"logprobs":null,"finish_reason":null}],"usage":null}\n'
    b"\n"
    b'data: {"id":"chatcmpl-gw-7f3a","object":"chat.completion.chunk","created":1767225600,'
    b'"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":'
    b'{"arguments":"{\\"city\\":"}}]},"logprobs":null,"finish_reason":null}],"usage":null}\n'
    b"\n"
    b": OPENROUTER PROCESSING\n"
    b"\n"
    b'data: {"id":"chatcmpl-gw-7f3a","object":"chat.completion.chunk","created":1767225600,'
    b'"model":"gpt-4o-mini","choices":[{"index":0,"delta":{},"logprobs":null,'
    b'"finish_reason":"tool_calls"}],"usage":null}\n'
    b"\n"
    b'data: {"id":"chatcmpl-gw-7f3a","object":"chat.completion.chunk","created":1767225600,'
    b'"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":61,"completion_tokens":15,'
    b'"total_tokens":76}}\n'
    b"\n"
    b"data: [DONE]\n"
    b"\n"
)

# Recorded shape: reference/protocols.md section 3.3 (tool-use stream with a ping).
ANTHROPIC_STREAM = (
    b"event: message_start\n"
    b'data: {"type":"message_start","message":{"id":"msg_gw_01","type":"message",'
    b'"role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,'
    b'"stop_sequence":null,"usage":{"input_tokens":410,"cache_read_input_tokens":1200,'
    b'"output_tokens":1}}}\n'
    b"\n"
    b"event: content_block_start\n"
    b'data: {"type":"content_block_start","index":0,"content_block":{"type":"tool_use",'
    b'"id":"toolu_01","name":"get_weather","input":{}}}\n'
    b"\n"
    b": ping\n"
    b"event: ping\n"
    b'data: {"type":"ping"}\n'
    b"\n"
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta",'
    b'"partial_json":"{\\"city\\": \\"Os"}}\n'
    b"\n"
    b"id: 7\n"
    b"retry: 3000\n"
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta",'
    b'"partial_json":"lo\\"}"}}\n'
    b"\n"
    b"event: content_block_stop\n"
    b'data: {"type":"content_block_stop","index":0}\n'
    b"\n"
    b"event: message_delta\n"
    b'data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},'
    b'"usage":{"output_tokens":38}}\n'
    b"\n"
    b"event: message_stop\n"
    b'data: {"type":"message_stop"}\n'
    b"\n"
)


def _crlf(b: bytes) -> bytes:
    return b.replace(b"\n", b"\r\n")


def _cr(b: bytes) -> bytes:
    return b.replace(b"\n", b"\r")


TRANSCRIPTS = {
    "openai-lf": OPENAI_STREAM,
    "openai-crlf": _crlf(OPENAI_STREAM),
    "openai-cr": _cr(OPENAI_STREAM),
    "anthropic-lf": ANTHROPIC_STREAM,
    "anthropic-crlf": _crlf(ANTHROPIC_STREAM),
    "anthropic-cr": _cr(ANTHROPIC_STREAM),
    "openai-bom": b"\xef\xbb\xbf" + OPENAI_STREAM,
}


def feed_all(parser: SSEParser, chunks: list[bytes]) -> list[SSEEvent]:
    out: list[SSEEvent] = []
    for c in chunks:
        out.extend(parser.feed(c))
    return out


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(max(c, 0), len(data)) for c in cuts})
    chunks, prev = [], 0
    for p in points:
        chunks.append(data[prev:p])
        prev = p
    chunks.append(data[prev:])
    return chunks


# --- the recorded transcripts ---------------------------------------------------------------


def test_openai_transcript_whole() -> None:
    events = SSEParser().feed(OPENAI_STREAM)
    assert len(events) == 5
    assert all(e.event is None for e in events)
    assert events[0].data.startswith(b'{"id":"chatcmpl-gw-7f3a"')
    assert b'"prompt_tokens":61' in events[3].data
    assert is_done(events[4])
    assert not any(is_done(e) for e in events[:4])


def test_anthropic_transcript_whole() -> None:
    events = SSEParser().feed(ANTHROPIC_STREAM)
    assert [e.event for e in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[2].data == b'{"type":"ping"}'
    assert events[-1].data == b'{"type":"message_stop"}'


@pytest.mark.parametrize("name", sorted(TRANSCRIPTS))
def test_line_ending_variants_agree(name: str) -> None:
    base = OPENAI_STREAM if name.startswith("openai") else ANTHROPIC_STREAM
    assert SSEParser().feed(TRANSCRIPTS[name]) == SSEParser().feed(base)


@pytest.mark.parametrize("name", sorted(TRANSCRIPTS))
def test_every_byte_alone(name: str) -> None:
    data = TRANSCRIPTS[name]
    whole = SSEParser().feed(data)
    assert feed_all(SSEParser(), [data[i : i + 1] for i in range(len(data))]) == whole


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(sorted(TRANSCRIPTS)),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=40),
)
def test_any_split_yields_same_events(name: str, cuts: list[int]) -> None:
    data = TRANSCRIPTS[name]
    whole = SSEParser().feed(data)
    assert feed_all(SSEParser(), split_at(data, cuts)) == whole


# --- WHATWG details -------------------------------------------------------------------------


def test_multiline_data_joined_with_lf() -> None:
    assert SSEParser().feed(b"data: a\ndata:b\ndata:  c\n\n") == [SSEEvent(None, b"a\nb\n c")]


def test_field_without_colon_and_empty_data() -> None:
    # "data" alone is a data field with an empty value: the event is dispatched, data b"".
    assert SSEParser().feed(b"data\n\n") == [SSEEvent(None, b"")]
    assert SSEParser().feed(b"data:\ndata:\n\n") == [SSEEvent(None, b"\n")]


def test_blank_line_without_data_dispatches_nothing_and_resets_event() -> None:
    p = SSEParser()
    assert p.feed(b"event: orphan\n\n") == []
    assert p.feed(b"data: x\n\n") == [SSEEvent(None, b"x")]


def test_comments_id_retry_unknown_ignored() -> None:
    stream = b": ping\nid: 1\nretry: 10\nfoo: bar\ndata: x\n: mid-event comment\n\n"
    assert SSEParser().feed(stream) == [SSEEvent(None, b"x")]


def test_keepalive_only_stream_yields_nothing() -> None:
    p = SSEParser()
    for _ in range(100):
        assert p.feed(b": ping\n\n") == []


def test_last_event_field_wins_and_empty_event_is_none() -> None:
    assert SSEParser().feed(b"event: a\nevent: b\ndata: 1\n\n") == [SSEEvent("b", b"1")]
    assert SSEParser().feed(b"event:\ndata: 1\n\n") == [SSEEvent(None, b"1")]


def test_only_one_leading_space_stripped() -> None:
    assert SSEParser().feed(b"data:   x \n\n") == [SSEEvent(None, b"  x ")]


def test_cr_split_from_lf_is_not_a_blank_line() -> None:
    p = SSEParser()
    assert p.feed(b"data: a\r") == []
    # The LF completes the CRLF begun above; it must not dispatch on its own.
    assert p.feed(b"\n") == []
    assert p.feed(b"data: b\r\n\r\n") == [SSEEvent(None, b"a\nb")]


def test_cr_cr_is_a_blank_line() -> None:
    p = SSEParser()
    assert p.feed(b"data: a\r") == []
    assert p.feed(b"\r") == [SSEEvent(None, b"a")]


def test_incomplete_event_at_end_is_not_dispatched() -> None:
    p = SSEParser()
    assert p.feed(b"data: complete\n\ndata: partial\n") == [SSEEvent(None, b"complete")]


def test_event_name_with_invalid_utf8_does_not_raise() -> None:
    [ev] = SSEParser().feed(b"event: \xff\xfe\ndata: \x80\n\n")
    assert ev.data == b"\x80"
    assert ev.event is not None


def test_is_done_exact() -> None:
    assert is_done(SSEEvent(None, b"[DONE]"))
    assert not is_done(SSEEvent(None, b"[DONE] "))
    assert not is_done(SSEEvent(None, b'{"done": true}'))


def test_rejects_nonpositive_limit() -> None:
    with pytest.raises(ValueError, match="positive"):
        SSEParser(max_event_bytes=0)


# --- size bounds ----------------------------------------------------------------------------


def test_oversized_event_dropped_next_parses() -> None:
    p = SSEParser(max_event_bytes=100)
    stream = b"data: " + b"x" * 500 + b"\n\ndata: ok\n\n"
    assert p.feed(stream) == [SSEEvent(None, b"ok")]


def test_event_at_exact_limit_kept_one_over_dropped() -> None:
    assert SSEParser(max_event_bytes=10).feed(b"data: 0123456789\n\n") == [
        SSEEvent(None, b"0123456789")
    ]
    assert SSEParser(max_event_bytes=10).feed(b"data: 0123456789a\n\n") == []
    # Joined size counts the separators: 5 + 1 + 5 = 11 > 10.
    assert SSEParser(max_event_bytes=10).feed(b"data: 01234\ndata: 56789\n\n") == []


def test_oversized_multiline_event_keeps_event_discarded_to_blank_line() -> None:
    p = SSEParser(max_event_bytes=8)
    stream = b"event: big\ndata: 12345\ndata: 67890\ndata: tail\n\nevent: small\ndata: ok\n\n"
    assert p.feed(stream) == [SSEEvent("small", b"ok")]


def test_oversized_line_streamed_in_small_chunks_is_bounded() -> None:
    p = SSEParser(max_event_bytes=1000)
    assert p.feed(b"data: ") == []
    for _ in range(1000):
        assert p.feed(b"y" * 100) == []
    # Memory stays bounded while the giant line is being skipped.
    assert len(p._buf) <= 1000 + 4096
    assert p.feed(b"\n\ndata: next\n\n") == [SSEEvent(None, b"next")]


def test_huge_comment_does_not_drop_the_event() -> None:
    p = SSEParser(max_event_bytes=50)
    stream = b"data: keep\n:" + b"c" * 10_000 + b"\nfoo: " + b"f" * 10_000 + b"\ndata: me\n\n"
    assert p.feed(stream) == [SSEEvent(None, b"keep\nme")]


@settings(max_examples=300, deadline=None)
@given(
    # Sizes past limit + 4096 exercise the bounded line buffer, not just the event size.
    size=st.one_of(st.integers(0, 300), st.integers(4000, 4500)),
    limit=st.integers(min_value=1, max_value=200),
    ending=st.sampled_from([b"\n", b"\r\n", b"\r"]),
    cuts=st.lists(st.integers(min_value=0, max_value=9200), max_size=30),
)
def test_oversized_split_anywhere(size: int, limit: int, ending: bytes, cuts: list[int]) -> None:
    stream = (
        b"data: "
        + b"z" * size
        + ending
        + b":"
        + b"c" * size
        + ending
        + ending
        + b"event: after"
        + ending
        + b"data: fine"
        + ending
        + ending
    )
    expected = [SSEEvent(None, b"z" * size)] if size <= limit else []
    if len(b"fine") <= limit:
        expected.append(SSEEvent("after", b"fine"))
    whole = SSEParser(max_event_bytes=limit).feed(stream)
    assert whole == expected
    assert feed_all(SSEParser(max_event_bytes=limit), split_at(stream, cuts)) == expected


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=400),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=20),
    limit=st.integers(min_value=1, max_value=64),
)
def test_arbitrary_bytes_never_raise_and_split_invariant(
    data: bytes, cuts: list[int], limit: int
) -> None:
    whole = SSEParser(max_event_bytes=limit).feed(data)
    assert feed_all(SSEParser(max_event_bytes=limit), split_at(data, cuts)) == whole
    assert all(len(e.data) <= limit for e in whole)


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(
        st.one_of(
            st.sampled_from([b"", b":", b": ping", b"data", b"data:", b"event: e", b"id: 1"]),
            st.binary(max_size=20).map(lambda b: b"data: " + b),
            st.binary(max_size=20),
        ),
        max_size=30,
    ),
    ending=st.sampled_from([b"\n", b"\r\n", b"\r"]),
    cuts=st.lists(st.integers(min_value=0, max_value=1000), max_size=20),
)
def test_structured_streams_split_invariant(
    lines: list[bytes], ending: bytes, cuts: list[int]
) -> None:
    # Bytes inside a line must not contain terminators, or the line would be two lines.
    clean = [ln.replace(b"\r", b"").replace(b"\n", b"") for ln in lines]
    stream = ending.join(clean) + ending
    whole = SSEParser(max_event_bytes=32).feed(stream)
    assert feed_all(SSEParser(max_event_bytes=32), split_at(stream, cuts)) == whole


# --- the one-event-per-chunk fast path must agree with the general path ----------------------


@pytest.mark.parametrize("name", sorted(TRANSCRIPTS))
def test_split_at_event_boundaries(name: str) -> None:
    data = TRANSCRIPTS[name]
    blank = b"\r\n\r\n" if b"\r\n" in data else b"\r\r" if b"\r" in data else b"\n\n"
    chunks = [part + blank for part in data.split(blank)[:-1]]
    assert b"".join(chunks) == data
    assert feed_all(SSEParser(), chunks) == SSEParser().feed(data)


@pytest.mark.parametrize(
    ("before", "expected"),
    [
        # A pending CR: the leading LF of the chunk is half of that CRLF.
        (b"data: a\r", [SSEEvent(None, b"a\nb")]),
        # Pending data lines belong to the same event.
        (b"data: a\n", [SSEEvent(None, b"a\nb")]),
        # A pending event name applies.
        (b"event: e\n", [SSEEvent("e", b"b")]),
        # An oversized event is still being discarded up to its blank line.
        (b"data: " + b"x" * 50 + b"\n", []),
        # A giant line is still being skipped.
        (b"data: " + b"x" * 5000, []),
    ],
)
def test_whole_event_chunk_after_pending_state(before: bytes, expected: list[SSEEvent]) -> None:
    p = SSEParser(max_event_bytes=20)
    p.feed(b"\n")
    assert p.feed(before) == []
    assert p.feed(b"data: b\n\n") == expected
    assert SSEParser(max_event_bytes=20).feed(b"\n" + before + b"data: b\n\n") == expected
