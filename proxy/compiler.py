"""Compile gateway.toml text into a validated Config snapshot; each error names its TOML path."""

from __future__ import annotations

import hashlib
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import urlsplit

from proxy.chains import TIMEOUT_KEYS, RouteCompiler
from proxy.config import (
    Config,
    ConfigError,
    Ejection,
    Server,
    Timeouts,
    Upstream,
)

PROVIDERS = frozenset({"openai"})
_TIMEOUT_KEYS = TIMEOUT_KEYS
_SERVER_KEYS = frozenset(
    {"listen", "max_body_mb", "drain_timeout_s", "workers", "access_log", "log_level", "watch"}
)
_DEFAULT_KEYS = frozenset({*_TIMEOUT_KEYS, "max_attempts", "ejection", "panic"})
_UPSTREAM_KEYS = frozenset(
    {"provider", "base_url", "credential", "model", "ejection", "stream_usage", *_TIMEOUT_KEYS}
)
_EJECTION_KEYS = frozenset({"consecutive_failures", "base_s", "max_s", "jitter"})
_LOG_LEVELS = frozenset({"debug", "info", "warning", "error"})


def compile_text(text: str, env: Mapping[str, str] | None = None) -> Config:
    """Parse and validate the whole file; raise ConfigError listing every problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"TOML syntax: {exc}"]) from None
    return compile_data(data, os.environ if env is None else env)


def compile_data(data: Mapping[str, object], env: Mapping[str, str]) -> Config:
    c = _Compiler(env)
    config = c.run(data)
    if c.errors:
        raise ConfigError(c.errors)
    assert config is not None
    return config


@dataclass(slots=True)
class _Compiler:
    env: Mapping[str, str]
    errors: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)

    def err(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    # --- typed getters -------------------------------------------------------------------

    def table(self, data: Mapping[str, object], key: str, path: str) -> Mapping[str, object]:
        value = data.get(key, {})
        if isinstance(value, Mapping):
            return value
        self.err(path, "must be a table")
        return {}

    def known(self, data: Mapping[str, object], allowed: frozenset[str], path: str) -> None:
        for key in data:
            if key not in allowed:
                self.err(f"{path}.{key}" if path else key, "unknown setting")

    def number(
        self, data: Mapping[str, object], key: str, path: str, default: float, *, lo: float = 0.0
    ) -> float:
        value = data.get(key, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < lo
        ):
            self.err(f"{path}.{key}", f"must be a number >= {lo:g}")
            return default
        return float(value)

    def integer(
        self, data: Mapping[str, object], key: str, path: str, default: int, *, lo: int = 0
    ) -> int:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            self.err(f"{path}.{key}", f"must be an integer >= {lo}")
            return default
        return value

    def boolean(self, data: Mapping[str, object], key: str, path: str, default: bool) -> bool:
        value = data.get(key, default)
        if not isinstance(value, bool):
            self.err(f"{path}.{key}", "must be true or false")
            return default
        return value

    def string(self, data: Mapping[str, object], key: str, path: str) -> str | None:
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            self.err(f"{path}.{key}", "must be a non-empty string")
            return None
        return value

    # --- sections --------------------------------------------------------------------------

    def run(self, data: Mapping[str, object]) -> Config | None:
        self.known(data, frozenset({"server", "defaults", "upstreams", "routes"}), "")
        server = self.server(self.table(data, "server", "server"))
        defaults = self.table(data, "defaults", "defaults")
        self.known(defaults, _DEFAULT_KEYS, "defaults")
        base_timeouts = self.timeouts(defaults, "defaults", Timeouts())
        base_ejection = self.ejection(defaults, "defaults", Ejection())
        max_attempts = self.integer(defaults, "max_attempts", "defaults", 3, lo=1)
        panic = self.boolean(defaults, "panic", "defaults", True)
        upstreams = {
            name: up
            for name, raw in self.table(data, "upstreams", "upstreams").items()
            if (up := self.upstream(name, raw, base_timeouts, base_ejection)) is not None
        }
        routes_raw = self.table(data, "routes", "routes")
        if not routes_raw:
            self.err("routes", "at least one route is required")
        defined = frozenset(self.table(data, "upstreams", "upstreams"))
        routes = RouteCompiler(self, routes_raw, upstreams, defined, max_attempts).run()
        if self.errors:
            return None
        return Config(
            server=server,
            upstreams=MappingProxyType(upstreams),
            routes=MappingProxyType(routes),
            panic=panic,
            secrets=tuple(self.secrets),
        )

    def server(self, raw: Mapping[str, object]) -> Server:
        self.known(raw, _SERVER_KEYS, "server")
        host, port = "127.0.0.1", 8080
        listen = raw.get("listen", "127.0.0.1:8080")
        parsed = parse_listen(listen) if isinstance(listen, str) else None
        if parsed is None:
            self.err("server.listen", 'must be "HOST:PORT" with a port from 0 to 65535')
        else:
            host, port = parsed
        workers_raw = raw.get("workers", 1)
        if workers_raw == "auto":
            workers = os.cpu_count() or 1
        else:
            workers = self.integer(raw, "workers", "server", 1, lo=1)
        level = raw.get("log_level", "info")
        if not isinstance(level, str) or level not in _LOG_LEVELS:
            self.err("server.log_level", f"must be one of {', '.join(sorted(_LOG_LEVELS))}")
            level = "info"
        return Server(
            host=host,
            port=port,
            max_body_bytes=int(self.number(raw, "max_body_mb", "server", 64, lo=0.001) * 2**20),
            drain_timeout_s=self.number(raw, "drain_timeout_s", "server", 60.0),
            workers=workers,
            access_log=self.boolean(raw, "access_log", "server", True),
            log_level=str(level),
            watch=self.boolean(raw, "watch", "server", True),
        )

    def timeouts(self, raw: Mapping[str, object], path: str, base: Timeouts) -> Timeouts:
        values: dict[str, float | None] = {
            "connect_s": base.connect_s,
            "ttfb_s": base.ttfb_s,
            "idle_s": base.idle_s,
            "total_s": base.total_s,
        }
        for key, attr in _TIMEOUT_KEYS.items():
            if key in raw:
                values[attr] = self.number(raw, key, path, 1.0, lo=0.001)
        return Timeouts(
            connect_s=values["connect_s"] or base.connect_s,
            ttfb_s=values["ttfb_s"] or base.ttfb_s,
            idle_s=values["idle_s"] or base.idle_s,
            total_s=values["total_s"],
        )

    def ejection(self, parent: Mapping[str, object], path: str, base: Ejection) -> Ejection:
        raw = self.table(parent, "ejection", f"{path}.ejection")
        p = f"{path}.ejection"
        self.known(raw, _EJECTION_KEYS, p)
        return Ejection(
            consecutive_failures=self.integer(
                raw, "consecutive_failures", p, base.consecutive_failures, lo=1
            ),
            base_s=self.number(raw, "base_s", p, base.base_s),
            max_s=self.number(raw, "max_s", p, base.max_s),
            jitter=self.number(raw, "jitter", p, base.jitter),
        )

    def upstream(
        self, name: str, raw: object, timeouts: Timeouts, ejection: Ejection
    ) -> Upstream | None:
        path = f"upstreams.{name}"
        if not isinstance(raw, Mapping):
            self.err(path, "must be a table")
            return None
        n_errors = len(self.errors)
        self.known(raw, _UPSTREAM_KEYS, path)
        provider = self.string(raw, "provider", path) or "openai"
        if provider not in PROVIDERS:
            self.err(f"{path}.provider", f'unknown provider "{provider}" (supported: openai)')
        base_url = self.base_url(raw, path)
        credential_ref = self.string(raw, "credential", path)
        credential = self.credential(credential_ref, f"{path}.credential")
        model = self.string(raw, "model", path)
        up_timeouts = self.timeouts(raw, path, timeouts)
        up_ejection = self.ejection(raw, path, ejection)
        stream_usage = self.boolean(raw, "stream_usage", path, True)
        if len(self.errors) > n_errors:
            return None
        secret_id = hashlib.sha256((credential or "").encode()).hexdigest()[:16]
        return Upstream(
            name=name,
            provider=provider,
            base_url=base_url,
            model=model,
            credential_ref=credential_ref,
            credential=credential,
            timeouts=up_timeouts,
            ejection=up_ejection,
            stream_usage=stream_usage,
            fingerprint=f"{provider}|{base_url}|{model}|{secret_id}",
        )

    def base_url(self, raw: Mapping[str, object], path: str) -> str:
        if "base_url" not in raw:
            self.err(f"{path}.base_url", "is required")
            return ""
        url = self.string(raw, "base_url", path)
        if url is None:
            return ""
        try:
            parts = urlsplit(url)
            host, _port = parts.hostname, parts.port
        except ValueError:
            self.err(f"{path}.base_url", "must be a valid URL (check the host and port)")
            return url
        if parts.scheme not in ("http", "https") or not host:
            self.err(f"{path}.base_url", "must be an http:// or https:// URL with a host")
        elif parts.query or parts.fragment or parts.username or parts.password:
            self.err(f"{path}.base_url", "must not carry a query, fragment or user info")
        return url.rstrip("/")

    def credential(self, ref: str | None, path: str) -> str | None:
        if ref is None:
            return None
        if not ref.startswith("env:") or len(ref) == 4:
            self.err(path, 'must be "env:VARIABLE" (secrets are not written in the file)')
            return None
        var = ref[4:]
        value = self.env.get(var)
        if not value:
            self.err(path, f"environment variable {var} is not set")
            return None
        self.secrets.append(value)
        return value


def parse_listen(text: str) -> tuple[str, int] | None:
    """`host:port` or `[v6]:port` to a pair; None when malformed."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not (port_text.isascii() and port_text.isdigit()):
        return None
    port = int(port_text)
    if port > 65535:
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, port
