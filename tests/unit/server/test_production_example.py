"""The production gateway.toml shipped beside the unit compiles, with real-looking upstreams."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config.compiler import compile_text
from proxy.config.values import ConfigError

EXAMPLE = Path(__file__).resolve().parents[3] / "systemd" / "gateway.toml"
ENV = {"OPENAI_API_KEY": "sk-test-openai", "GROQ_API_KEY": "gsk-test-groq"}


def test_it_compiles_with_its_credentials_set() -> None:
    config = compile_text(EXAMPLE.read_text("utf-8"), ENV)
    assert set(config.routes) == {"chat-fast", "chat-smart", "chat-local"}
    assert config.routes["chat-smart"].tiers[-1].origin == "chat-fast"
    assert config.server.readyz_detail == "loopback"


def test_it_points_at_no_fake_provider() -> None:
    config = compile_text(EXAMPLE.read_text("utf-8"), ENV)
    hosts = {up.base_url.split("/")[2] for up in config.upstreams.values()}
    assert not any(h.startswith(("127.", "localhost")) for h in hosts), hosts


def test_a_missing_credential_is_named() -> None:
    with pytest.raises(ConfigError) as caught:
        compile_text(EXAMPLE.read_text("utf-8"), {"OPENAI_API_KEY": "sk-test"})
    assert any("GROQ_API_KEY" in e for e in caught.value.errors)
    assert not any("sk-test" in e for e in caught.value.errors)
