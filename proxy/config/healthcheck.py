"""An upstream's active health check (`health = {...}`): a cheap GET, how often, how strict."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from proxy.config.reader import Reader, keys_of
from proxy.config.schema import setting


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthCheck:
    """GET `path` on the upstream every `every_s` (jittered), never a billed completion."""

    every_s: float = setting(15.0, lo=1)
    path: str = setting("")
    """Appended to `base_url`; empty: the provider's model list (see `DEFAULT_PATHS`)."""
    timeout_s: float = setting(5.0, lo=0.1)
    jitter: float = setting(0.1, lo=0)
    """Each interval is `every_s` x (1 +- jitter), so probes of many gateways do not align."""
    failures: int = setting(2, lo=1)
    """Consecutive failed probes that eject the upstream."""


HEALTH_KEYS = keys_of(HealthCheck)
DEFAULT_PATHS: Mapping[str, str] = {
    "openai": "/models",
    "azure": "/openai/models",
    "anthropic": "/models",
    "gemini": "/models",
}
"""The provider's free model-list GET, relative to the usual base URL of each dialect."""


def read_health(c: Reader, raw: object, path: str, dialect: str) -> HealthCheck | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        c.err(path, "must be a table like { every_s = 15 }")
        return None
    c.known(raw, HEALTH_KEYS, path)
    check = c.read(HealthCheck, raw, path)
    if check.jitter > 1:
        c.err(f"{path}.jitter", "must be a number from 0 to 1")
    if check.path and not check.path.startswith("/"):
        c.err(f"{path}.path", 'must start with "/"')
    default = DEFAULT_PATHS.get(dialect)
    if default is None:  # Bedrock: every call is SigV4-signed, and its runtime has no free GET
        c.err(path, f'provider "{dialect}" has no free GET to probe (leave health unset)')
        return None
    if check.path:
        return check
    return replace(check, path=default)
