"""SigV4 signatures for Bedrock requests, made by botocore's signer (loaded on first use)."""

from __future__ import annotations

from typing import Any

SERVICE = "bedrock"
"""The signing name of bedrock-runtime (Converse and ConverseStream)."""


def sign(
    url: str, body: bytes, region: str, key_id: str, secret: str, token: str | None
) -> dict[str, str]:
    """The headers that authenticate one POST: Authorization, X-Amz-Date (the signer reads the
    clock), X-Amz-Security-Token with temporary credentials. Content-Type and Host are signed
    too, so they must be sent exactly as given here (aiohttp derives Host from the URL)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request: Any = AWSRequest(
        method="POST", url=url, data=body, headers={"Content-Type": "application/json"}
    )
    SigV4Auth(Credentials(key_id, secret, token), SERVICE, region).add_auth(request)
    return {name: str(value) for name, value in request.headers.items()}
