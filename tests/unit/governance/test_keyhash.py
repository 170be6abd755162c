"""Key secrets: random, salted hashes, found in both SDKs' headers."""

from __future__ import annotations

from proxy.governance.keyhash import PREFIX, hash_key, new_key, new_salt, presented_key


def test_new_keys_are_random_and_prefixed() -> None:
    a, b = new_key(), new_key()
    assert a != b
    assert a.startswith(PREFIX)
    assert len(a) > 40


def test_hash_depends_on_salt_and_key() -> None:
    salt = new_salt().encode()
    key = new_key()
    assert hash_key(salt, key) == hash_key(salt, key)
    assert hash_key(salt, key) != hash_key(new_salt().encode(), key)
    assert hash_key(salt, key) != hash_key(salt, key + "x")
    assert len(hash_key(salt, key)) == 64
    assert key not in hash_key(salt, key)


def test_presented_key_from_either_sdk() -> None:
    assert presented_key({"authorization": "Bearer sk-1"}) == "sk-1"
    assert presented_key({"authorization": "bearer  sk-2 "}) == "sk-2"
    assert presented_key({"x-api-key": "sk-3"}) == "sk-3"
    assert presented_key({"authorization": "Basic abc"}) is None
    assert presented_key({"authorization": "Bearer "}) is None
    assert presented_key({}) is None


def test_virtual_keys_are_scrubbed_from_library_log_records() -> None:
    from proxy.ops.logs import Redactor

    key = new_key()
    text = Redactor().scrub(f"bad header line: X-Custom: {key} and token={key}")
    assert key not in text
    assert "[redacted]" in text
