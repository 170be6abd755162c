"""Bedrock Converse wire format for the fake provider: SigV4 checks, JSON, binary event stream."""

from __future__ import annotations

import hmac
import re
import struct
import time
import zlib
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson

from proxy.fake.openai_dialect import Events, Invalid, Reply

FAKE_KEY_ID = "AKIDFAKEGATEWAY00001"
FAKE_SECRET = "fake-secret-access-key/0001"
"""The key pair the fake accepts unless it is given others."""

_PATH = re.compile(r"/model/([^/]+)/(converse|converse-stream)$")
_AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
    r"SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$"
)
_MAX_SKEW_S = 300
"""AWS refuses a signature more than five minutes off the server's clock."""


def error(message: str) -> bytes:
    return orjson.dumps({"message": message})


def default_error(status: int) -> bytes:
    return error(
        {429: "Too many requests, please wait before trying again."}.get(
            status, f"Error {status} (fake)"
        )
    )


def verify(
    method: str, url: str, headers: Mapping[str, str], body: bytes, keys: Mapping[str, str]
) -> None:
    """Recompute the SigV4 signature with botocore and compare; Invalid(403) when it differs."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    match = _AUTH.match(headers.get("Authorization", ""))
    if match is None:
        raise Invalid(403, error("Missing Authentication Token"))
    key_id, _date, region, service, signed, signature = match.groups()
    secret = keys.get(key_id)
    if secret is None:
        raise Invalid(403, error("The security token included in the request is invalid."))
    amz_date = headers.get("X-Amz-Date", "")
    try:
        at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise Invalid(403, error("Missing or malformed X-Amz-Date.")) from None
    if abs(time.time() - at) > _MAX_SKEW_S:
        raise Invalid(403, error("Signature expired."))
    names = signed.split(";")
    request: Any = AWSRequest(
        method=method, url=url, data=body, headers={n: headers.get(n, "") for n in names}
    )
    request.context["timestamp"] = amz_date
    token = headers.get("X-Amz-Security-Token")
    auth = SigV4Auth(Credentials(key_id, secret, token), service, region)
    expected = auth.signature(
        auth.string_to_sign(request, auth.canonical_request(request)), request
    )
    if not hmac.compare_digest(expected, signature):
        raise Invalid(
            403,
            error("The request signature we calculated does not match the signature you provided."),
        )


def frame(event: str, payload: dict[str, object], kind: str = "event") -> bytes:
    """One AWS event-stream message: prelude (lengths + CRC), string headers, payload, CRC."""
    fields = {
        ":event-type" if kind == "event" else ":exception-type": event,
        ":content-type": "application/json",
        ":message-type": kind,
    }
    head = b"".join(
        bytes([len(k)]) + k.encode() + b"\x07" + struct.pack(">H", len(v)) + v.encode()
        for k, v in fields.items()
    )
    body = orjson.dumps(payload)
    prelude = struct.pack(">II", 12 + len(head) + len(body) + 4, len(head))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + head + body
    return message + struct.pack(">I", zlib.crc32(message))


def _usage(r: Reply) -> dict[str, int]:
    out = len(r.pieces)
    return {
        "inputTokens": r.prompt_tokens,
        "outputTokens": out,
        "totalTokens": r.prompt_tokens + out,
        "cacheReadInputTokens": r.cached_tokens,
    }


def response_json(r: Reply) -> bytes:
    text = "".join(r.pieces)
    if r.tool is not None:
        use = {"toolUseId": f"tooluse_{r.rid}", "name": r.tool, "input": orjson.loads(text)}
        content: list[object] = [{"toolUse": use}]
    else:
        content = [{"text": text}]
    return orjson.dumps(
        {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": "end_turn" if r.tool is None else "tool_use",
            "usage": _usage(r),
            "metrics": {"latencyMs": 1},
        }
    )


def response_events(r: Reply) -> Events:
    """messageStart, [contentBlockStart], deltas, contentBlockStop, messageStop, metadata."""
    head = [frame("messageStart", {"role": "assistant"})]
    if r.tool is None:
        content = tuple(
            frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": p}})
            for p in r.pieces
        )
    else:
        start = {"toolUse": {"toolUseId": f"tooluse_{r.rid}", "name": r.tool}}
        head.append(frame("contentBlockStart", {"contentBlockIndex": 0, "start": start}))
        content = tuple(
            frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"toolUse": {"input": p}}})
            for p in r.pieces
        )
    tail = (
        frame("contentBlockStop", {"contentBlockIndex": 0}),
        frame("messageStop", {"stopReason": "end_turn" if r.tool is None else "tool_use"}),
        frame("metadata", {"usage": _usage(r), "metrics": {"latencyMs": 1}}),
    )
    return Events(tuple(head), content, tail)


def answer(
    method: str, path: str, body: bytes, base: Reply, models: tuple[str, ...]
) -> bytes | Events:
    """The JSON body or the event stream for one request, or Invalid (400, unknown URL 404)."""
    match = _PATH.search(path)
    if method != "POST" or match is None:
        raise Invalid(404, error(f"Unknown path {path}"))
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Invalid(400, error("Malformed input request, please reformat your input.")) from None
    messages = obj.get("messages") if isinstance(obj, dict) else None
    if not isinstance(messages, list) or not messages:
        raise Invalid(400, error("A conversation must start with a user message."))
    r = replace(base, model=match.group(1))
    return response_events(r) if match.group(2) == "converse-stream" else response_json(r)
