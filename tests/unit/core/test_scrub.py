"""Credential scrubbing: whole bodies, headers, and streams cut at any byte."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from proxy.core.exchange import Usage
from proxy.core.scrub import REDACTED, ScrubbedStream, Scrubber, scrubbed, scrubber

KEY = "sk-live-0123456789abcdef"
SLASHED = "abc/def+ghi=="


class Passthrough:
    usage: Usage | None = None

    def chunk(self, data: bytes) -> bytes:
        return data

    def end(self) -> bytes:
        return b""


def test_credentials_and_their_bearer_form_are_replaced() -> None:
    s = Scrubber([KEY, SLASHED, "abc"])
    body = f'{{"error":{{"message":"bad key Bearer {KEY} or {KEY}"}}}}'.encode()
    assert s.clean(body) == b'{"error":{"message":"bad key Bearer [redacted] or [redacted]"}}'
    assert s.clean(b'"key abc\\/def+ghi=="') == b'"key [redacted]"'  # JSON-escaped slash
    assert s.clean(b"abc is too short to be a credential") == b"abc is too short to be a credential"
    clean = b"nothing to see"
    assert s.clean(clean) is clean
    assert s.clean_headers({"x-request-id": f"r {KEY}", "a": "b"}) == {
        "x-request-id": "r [redacted]",
        "a": "b",
    }


def test_a_credential_containing_another_is_replaced_whole() -> None:
    s = Scrubber(["abcd", "abcdefgh"])
    assert s.clean(b"xabcdefghx abcd") == b"x[redacted]x [redacted]"


def test_partial_tail_is_the_start_of_a_credential_only() -> None:
    s = Scrubber([KEY])
    assert s.partial_tail(b"data: {}\n\n") == 0
    assert s.partial_tail(b"Bearer sk-li") == 5
    assert s.partial_tail(b"Bearer s") == 1
    assert s.partial_tail(b"sk-live-0123456789abcdeX") == 0


def test_no_credentials_means_no_wrapper() -> None:
    inner = Passthrough()
    assert scrubbed(inner, ()) is inner
    assert isinstance(scrubbed(inner, (KEY,)), ScrubbedStream)
    assert scrubber((KEY,)) is scrubber((KEY,))


@given(
    before=st.binary(max_size=40),
    after=st.binary(max_size=40),
    cuts=st.lists(st.integers(min_value=0, max_value=120), max_size=6),
)
def test_a_stream_cut_anywhere_never_lets_a_credential_through(
    before: bytes, after: bytes, cuts: list[int]
) -> None:
    whole = before + b"Bearer " + KEY.encode() + after
    bounds = sorted({min(c, len(whole)) for c in cuts} | {0, len(whole)})
    stream = ScrubbedStream(Passthrough(), Scrubber([KEY]))
    out = b"".join(stream.chunk(whole[a:b]) for a, b in itertools.pairwise(bounds))
    out += stream.end()
    assert out == Scrubber([KEY]).clean(whole)
    assert KEY.encode() not in out
    assert REDACTED in out


def test_complete_events_are_never_held_back() -> None:
    stream = ScrubbedStream(Passthrough(), Scrubber([KEY]))
    assert stream.chunk(b'data: {"a":1}\n\ndata: {"m":"s') == b'data: {"a":1}\n\ndata: {"m":"'
    assert stream.chunk(b'k-other"}\n\n') == b'sk-other"}\n\n'
