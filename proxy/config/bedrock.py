"""The settings of `provider = "bedrock"` upstreams: region, AWS access key pair, optional extra."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from typing import Any

from proxy.config.reader import Reader

Resolve = Callable[[str | None, str], str | None]
"""Resolve an `env:NAME` reference at a TOML path (the compiler's credential check)."""


def default_base_url(raw: Mapping[str, object]) -> str | None:
    region = raw.get("region")
    return f"https://bedrock-runtime.{region}.amazonaws.com" if isinstance(region, str) else None


def bedrock_fields(
    c: Reader, raw: Mapping[str, object], path: str, refs: list[str], resolve: Resolve
) -> dict[str, Any]:
    """Check what SigV4 needs and resolve the key id and session token references.

    `credential` is the secret access key; `access_key_id` and `session_token` are `env:`
    references too, so no part of the key pair is written in the file.
    """
    if importlib.util.find_spec("botocore") is None:
        c.err(
            f"{path}.provider",
            "bedrock needs the optional extra: pip install 'llm-gateway[bedrock]'",
        )
    if not isinstance(raw.get("region"), str):
        c.err(f"{path}.region", 'is required with provider = "bedrock"')
    if len(refs) != 1:
        c.err(f"{path}.credential", 'bedrock takes one "env:NAME" holding the secret access key')
    key_ref = c.string(raw, "access_key_id", path)
    if key_ref is None:
        c.err(f"{path}.access_key_id", 'is required with provider = "bedrock" ("env:NAME")')
    token_ref = c.string(raw, "session_token", path)
    return {
        "aws_key_id_ref": key_ref,
        "aws_key_id": resolve(key_ref, f"{path}.access_key_id"),
        "aws_token_ref": token_ref,
        "aws_token": resolve(token_ref, f"{path}.session_token"),
    }
