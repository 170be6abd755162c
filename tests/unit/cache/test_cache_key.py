"""Cache keys: key order and spacing ignored, stream and user ignored, scopes never shared."""

from __future__ import annotations

from proxy.cache.key import cache_key

BODY = b'{"model": "chat", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}'


def test_key_order_and_whitespace_do_not_matter() -> None:
    other = b'{"temperature":0,"messages":[{"content":"hi","role":"user"}],"model":"chat"}'
    assert cache_key("chat", "team:a", BODY) == cache_key("chat", "team:a", other)


def test_stream_and_user_fields_share_the_entry() -> None:
    streamed = BODY[:-1] + b', "stream": true, "stream_options": {"include_usage": true}}'
    assert cache_key("chat", "t", BODY) == cache_key("chat", "t", streamed)
    assert cache_key("chat", "t", BODY) == cache_key("chat", "t", BODY[:-1] + b', "user": "u"}')


def test_anything_that_changes_the_answer_changes_the_key() -> None:
    base = cache_key("chat", "t", BODY)
    assert base != cache_key("chat", "t", BODY.replace(b'"temperature": 0', b'"temperature": 1'))
    assert base != cache_key("chat", "t", BODY.replace(b"hi", b"hello"))
    assert base != cache_key("other", "t", BODY)
    assert base != cache_key("chat", "u", BODY)


def test_not_an_object_is_not_cached() -> None:
    assert cache_key("chat", "t", b"[1, 2]") is None
    assert cache_key("chat", "t", b"{nope") is None
