"""The Azure OpenAI dialect: OpenAI bytes, the deployment in the path, an `api-key` header."""

from __future__ import annotations

from urllib.parse import quote

from proxy.config.values import Endpoint, Upstream
from proxy.providers.openai import PATHS, OpenAI


class Azure(OpenAI):
    """`{base_url}/openai/deployments/{deployment}/chat/completions?api-version=...`."""

    name = "azure"

    def url(self, up: Upstream, endpoint: Endpoint) -> str:
        deployment = quote(up.deployment or "", safe="")
        if endpoint is Endpoint.RESPONSES:  # not per deployment: the body's model names it
            url = f"{up.base_url}/openai/responses"
        else:
            url = f"{up.base_url}/openai/deployments/{deployment}{PATHS[endpoint]}"
        url += "?api-version=" + quote(up.api_version or "", safe="")
        return url + "&" + up.query if up.query else url

    def authorize(self, headers: dict[str, str], up: Upstream) -> None:
        if up.credential:
            headers["api-key"] = up.credential
