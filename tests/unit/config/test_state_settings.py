"""The [state] section: memory by default; Redis URL checks, env: credentials, redaction."""

from __future__ import annotations

import pytest

from proxy.config.compiler import compile_text
from proxy.config.values import ConfigError

BASE = '[upstreams.a]\nbase_url = "http://127.0.0.1:1"\n[routes.r]\ntiers = [{ a = 1 }]\n'


def test_memory_is_the_default_and_needs_nothing() -> None:
    st = compile_text(BASE).state
    assert st.backend == "memory"
    assert st.url is None
    assert st.on_state_error == "closed"


def test_redis_settings_are_read_with_units() -> None:
    text = BASE + '[state]\nbackend = "redis"\nurl = "redis://127.0.0.1:6379/2"\ntimeout_ms = 100\n'
    st = compile_text(text + 'on_state_error = "open"\nprefix = "fleet:"\n').state
    assert st.url == "redis://127.0.0.1:6379/2"
    assert st.timeout_s == pytest.approx(0.1)
    assert st.on_state_error == "open"
    assert st.prefix == "fleet:"


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        ('backend = "redis"\n', "state.url: is required"),
        ('backend = "redis"\nurl = "http://x"\n', "state.url: must be a redis://"),
        ('backend = "redis"\nurl = "redis://:pw@h:1/0"\n', 'write it as "env:VARIABLE"'),
        ('backend = "etcd"\n', "state.backend"),
        ('on_state_error = "maybe"\n', "state.on_state_error"),
        ("tiemout_ms = 5\n", 'did you mean "timeout_ms"'),
        ('backend = "redis"\nurl = "env:NOPE_NOT_SET"\n', "NOPE_NOT_SET is not set"),
    ],
)
def test_bad_state_sections_name_the_key(lines: str, error: str) -> None:
    with pytest.raises(ConfigError, match="state") as info:
        compile_text(BASE + "[state]\n" + lines, env={})
    assert error in str(info.value)


def test_a_password_from_env_is_a_secret_and_never_shown() -> None:
    env = {"R": "redis://:s3cret@10.0.0.5:6379/0"}
    c = compile_text(BASE + '[state]\nbackend = "redis"\nurl = "env:R"\n', env=env)
    assert c.state.url == env["R"]
    assert "s3cret" in c.secrets
    assert "s3cret" not in repr(c.state)
    assert "s3cret" not in repr(c)
