"""The health-check GET of an upstream: its URL and the provider's own auth headers, no body."""

from __future__ import annotations

from urllib.parse import quote

from proxy.config.values import Provider, Upstream


def probe_target(up: Upstream, path: str) -> tuple[str, dict[str, str]]:
    """URL and headers of a GET on `path` (a free model list by default) with the credential."""
    url = up.base_url + path
    query = up.query
    headers: dict[str, str] = {"accept": "application/json"}
    if up.provider is Provider.AZURE:
        version = "api-version=" + quote(up.api_version or "", safe="")
        query = f"{version}&{query}" if query else version
        if up.credential:
            headers["api-key"] = up.credential
    elif up.provider is Provider.ANTHROPIC:
        headers["anthropic-version"] = up.anthropic_version
        if up.credential:
            headers["x-api-key"] = up.credential
    elif up.provider is Provider.GEMINI:
        if up.credential:
            headers["x-goog-api-key"] = up.credential  # never `?key=`, which ends up in logs
    elif up.credential:
        headers["Authorization"] = "Bearer " + up.credential
    if query:
        url += ("&" if "?" in url else "?") + query
    return url, headers
