"""Tests for proxy.providers.sse_progress: data events count as progress, comments do not."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from proxy.providers.openai import OpenAI
from proxy.providers.sse_progress import DataProgress, OpeningProgress

EVENT = b'data: {"choices": [{"delta": {"content": "hi"}}]}\n\n'


def feed_all(*chunks: bytes) -> list[bool]:
    p = DataProgress()
    return [p.feed(c) for c in chunks]


def test_a_whole_data_event_is_progress() -> None:
    assert feed_all(EVENT, EVENT) == [True, True]


def test_comments_are_not_progress() -> None:
    assert feed_all(b": keepalive\n\n", b":\n\n", b": ping\r\n\r\n", b"") == [
        False,
        False,
        False,
        False,
    ]


def test_a_comment_then_data_in_one_chunk_is_progress() -> None:
    assert feed_all(b": keepalive\n\n" + EVENT) == [True]
    assert feed_all(b": keepalive\r\n\r\n" + EVENT) == [True]


def test_a_comment_split_across_chunks_stays_a_comment() -> None:
    # The second chunk starts with "d" but continues the comment line of the first.
    assert feed_all(b": keep", b"data-looking text of a comment\n\n") == [False, False]


def test_a_data_line_split_across_chunks_counts_each_part() -> None:
    assert feed_all(b"da", b'ta: {"x": 1}', b"\n\n") == [True, True, False]
    assert feed_all(b": c\n", b"d", b"ata: 1\n\n") == [False, True, True]


def test_the_done_sentinel_is_data() -> None:
    assert feed_all(b": keepalive\n\n", b"data: [DONE]\n\n") == [False, True]


def test_the_openai_dialect_hands_out_fresh_watchers() -> None:
    a, b = OpenAI().progress(), OpenAI().progress()
    assert a is not None and b is not None and a is not b
    assert a.feed(b": keep") is False
    assert b.feed(b"data: 1\n\n") is True


comment_lines = st.text(alphabet="abcdata :{}", max_size=20).map(lambda t: f":{t}\n".encode())


@given(st.lists(comment_lines, max_size=8), st.lists(st.integers(0, 200), max_size=6))
def test_comments_alone_never_count_however_they_are_split(
    lines: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(lines) + b"\n"
    p = DataProgress()
    at = 0
    for cut in [*sorted({c % (len(stream) + 1) for c in cuts}), len(stream)]:
        assert p.feed(stream[at:cut]) is False
        at = cut


@given(st.lists(comment_lines, max_size=5), st.lists(st.integers(0, 400), max_size=6))
def test_data_after_comments_is_seen_however_the_stream_is_split(
    lines: list[bytes], cuts: list[int]
) -> None:
    head = b"".join(lines) + b"\n"
    stream = head + EVENT
    p = DataProgress()
    seen_at = None
    at = 0
    for cut in [*sorted({c % (len(stream) + 1) for c in cuts}), len(stream)]:
        if p.feed(stream[at:cut]) and seen_at is None:
            seen_at = cut
        at = cut
    # Progress is first reported by the chunk holding the first byte of the data line.
    assert seen_at is not None and seen_at > len(head)


OPENING = (
    b'event: message_start\ndata: {"type":"message_start"}\n\n',
    b'event: ping\ndata: {"type":"ping"}\n\n',
    b'event: content_block_start\ndata: {"type":"content_block_start"}\n\n',
)


def test_opening_progress_waits_for_the_first_whole_content_event() -> None:
    p = OpeningProgress()
    assert [p.feed(c) for c in OPENING] == [False, False, True]


def test_opening_progress_counts_an_error_event() -> None:
    p = OpeningProgress()
    assert not p.feed(OPENING[0])
    assert not p.feed(b"event: error\ndata: {")
    assert p.feed(b'"type":"error"}\n\n')


@given(st.data())
def test_opening_progress_is_the_same_whatever_the_chunk_edges(data: st.DataObject) -> None:
    whole = b"".join(OPENING)
    cuts = sorted(data.draw(st.lists(st.integers(1, len(whole) - 1), max_size=8, unique=True)))
    parts = [whole[a:b] for a, b in zip([0, *cuts], [*cuts, len(whole)], strict=True)]
    p = OpeningProgress()
    seen = [p.feed(part) for part in parts]
    assert seen[-1] and not any(seen[:-1])
