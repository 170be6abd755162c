"""Tests for proxy.config.presets and the compiler's provider, azure and many-key handling."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.config.compiler import compile_data
from proxy.config.presets import PRESETS
from proxy.config.values import Config, ConfigError, Provider

ENV = {"K1": "sk-one-111", "K2": "sk-two-222", "AZ": "az-secret"}


def compile_one(up: dict[str, Any], weight: int = 1) -> Config:
    data = {"upstreams": {"u": up}, "routes": {"r": {"tiers": [{"u": weight}]}}}
    return compile_data(data, ENV)


def errors(up: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        compile_one(up)
    return list(info.value.errors)


@pytest.mark.parametrize("name", sorted(set(PRESETS) - {"openai", "azure", "bedrock"}))
def test_every_preset_fills_its_base_url_and_speaks_a_dialect(name: str) -> None:
    up = compile_one({"provider": name}).upstreams["u"]
    assert up.base_url == PRESETS[name].base_url
    assert up.provider in (Provider.OPENAI, Provider.ANTHROPIC, Provider.GEMINI)
    assert up.preset == name


def test_preset_quirks_and_overrides() -> None:
    groq = compile_one({"provider": "groq"}).upstreams["u"]
    assert groq.stream_usage is False
    assert compile_one({"provider": "groq", "stream_usage": True}).upstreams["u"].stream_usage
    own = compile_one({"provider": "vllm", "base_url": "http://10.0.0.5:8000/v1"}).upstreams["u"]
    assert own.base_url == "http://10.0.0.5:8000/v1"


def test_generic_openai_still_needs_a_base_url() -> None:
    assert errors({"provider": "openai"}) == ["upstreams.u.base_url: is required"]


def test_azure_needs_base_url_deployment_and_api_version() -> None:
    assert sorted(errors({"provider": "azure"})) == [
        'upstreams.u.api_version: is required with provider = "azure"',
        "upstreams.u.base_url: is required",
        'upstreams.u.deployment: is required with provider = "azure"',
    ]
    up = compile_one(
        {
            "provider": "azure",
            "base_url": "https://res.openai.azure.com",
            "deployment": "gpt4o-prod",
            "api_version": "2024-10-21",
            "credential": "env:AZ",
        }
    ).upstreams["u"]
    assert (up.provider, up.deployment, up.api_version) == (
        Provider.AZURE,
        "gpt4o-prod",
        "2024-10-21",
    )


def test_credential_list_expands_into_one_upstream_per_key() -> None:
    cfg = compile_one(
        {"provider": "groq", "credential": ["env:K1", "env:K2"], "model": "llama"}, weight=3
    )
    assert sorted(cfg.upstreams) == ["u#1", "u#2"]
    one, two = cfg.upstreams["u#1"], cfg.upstreams["u#2"]
    assert (one.credential, two.credential) == ("sk-one-111", "sk-two-222")
    assert (one.credential_ref, two.credential_ref) == ("env:K1", "env:K2")
    assert one.fingerprint != two.fingerprint
    members = cfg.routes["r"].tiers[0].members
    assert [(m.upstream.name, m.weight) for m in members] == [("u#1", 3), ("u#2", 3)]
    # No key value in any name or fingerprint.
    for up in (one, two):
        assert "sk-" not in up.name and "sk-" not in up.fingerprint and "sk-" not in repr(up)
    assert set(cfg.secrets) == {"sk-one-111", "sk-two-222"}


@pytest.mark.parametrize(
    ("credential", "message"),
    [
        (["env:K1", "env:K1"], "upstreams.u.credential: lists the same credential twice"),
        (
            ["env:K1", "env:MISSING"],
            "upstreams.u.credential[1]: environment variable MISSING is not set",
        ),
        ([], 'upstreams.u.credential: must be "env:NAME" or a non-empty list of them'),
        (["env:K1", 7], 'upstreams.u.credential: must be "env:NAME" or a non-empty list of them'),
    ],
)
def test_bad_credential_lists(credential: object, message: str) -> None:
    assert message in errors({"provider": "groq", "credential": credential})


def test_hash_is_reserved_in_upstream_names() -> None:
    data = {"upstreams": {"a#1": {"provider": "groq"}}, "routes": {"r": {"tiers": [{"a#1": 1}]}}}
    with pytest.raises(ConfigError) as info:
        compile_data(data, ENV)
    assert any("must not contain" in e for e in info.value.errors)


def test_bedrock_settings() -> None:
    env = {**ENV, "AKID": "AKIDEXAMPLE", "TOKEN": "session-token"}
    data: dict[str, Any] = {
        "upstreams": {
            "u": {
                "provider": "bedrock",
                "region": "eu-west-1",
                "credential": "env:K1",
                "access_key_id": "env:AKID",
                "session_token": "env:TOKEN",
                "model": "anthropic.claude-3-haiku-20240307-v1:0",
            }
        },
        "routes": {"r": {"tiers": [{"u": 1}]}},
    }
    up = compile_data(data, env).upstreams["u"]
    assert up.base_url == "https://bedrock-runtime.eu-west-1.amazonaws.com"
    assert (up.region, up.aws_key_id, up.aws_token) == ("eu-west-1", "AKIDEXAMPLE", "session-token")
    assert "AKIDEXAMPLE" not in repr(up) and "session-token" not in repr(up)
    assert {"AKIDEXAMPLE", "session-token", "sk-one-111"} <= set(compile_data(data, env).secrets)


def test_bedrock_needs_region_key_id_and_one_secret() -> None:
    errs = errors({"provider": "bedrock", "credential": ["env:K1", "env:K2"]})
    assert 'upstreams.u.region: is required with provider = "bedrock"' in errs
    assert any(e.startswith("upstreams.u.access_key_id: is required") for e in errs)
    assert any(e.startswith("upstreams.u.credential: bedrock takes one") for e in errs)


def test_mistral_gets_short_tool_ids() -> None:
    assert compile_one({"provider": "mistral"}).upstreams["u"].short_tool_ids is True
    assert compile_one({"provider": "together"}).upstreams["u"].short_tool_ids is False
