"""Compile gateway.toml text into a validated Config snapshot; each error names its TOML path."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tomllib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from proxy.config import bedrock
from proxy.config.caching import read_settings
from proxy.config.chains import RouteCompiler
from proxy.config.healthcheck import read_health
from proxy.config.presets import PRESETS, Preset
from proxy.config.reader import Reader, keys_of
from proxy.config.statesettings import StateSettings
from proxy.config.values import (
    Admin,
    Config,
    ConfigError,
    Defaults,
    Ejection,
    Price,
    Provider,
    Server,
    Timeouts,
    Tracing,
    Upstream,
)

SECTIONS = frozenset(
    {"server", "defaults", "upstreams", "routes", "admin", "tracing", "state", "cache"}
)
SERVER_KEYS = keys_of(Server)
ADMIN_KEYS = keys_of(Admin)
TRACING_KEYS = keys_of(Tracing)
DEFAULT_KEYS = keys_of(Defaults, Timeouts) | {"ejection"}
UPSTREAM_KEYS = keys_of(Upstream, Timeouts) | {"ejection", "price"}
PRICE_KEYS = keys_of(Price)
EJECTION_KEYS = keys_of(Ejection)
STATE_KEYS = keys_of(StateSettings)


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


class _Compiler(Reader):
    def __init__(self, env: Mapping[str, str]) -> None:
        super().__init__()
        self.env = env
        self.secrets: list[str] = []

    def run(self, data: Mapping[str, object]) -> Config | None:
        self.known(data, SECTIONS, "")
        server = self.server(self.table(data, "server", "server"))
        admin = self.admin(data["admin"], server) if "admin" in data else None
        tracing = None
        if "tracing" in data:
            raw_tracing = self.table(data, "tracing", "tracing")
            self.known(raw_tracing, TRACING_KEYS, "tracing")
            tracing = self.read(Tracing, raw_tracing, "tracing")
        raw_defaults = self.table(data, "defaults", "defaults")
        self.known(raw_defaults, DEFAULT_KEYS, "defaults")
        base_timeouts = self.read(Timeouts, raw_defaults, "defaults")
        base_ejection = self.ejection(raw_defaults, "defaults", Ejection())
        defaults = self.read(Defaults, raw_defaults, "defaults")
        groups = {
            name: ups
            for name, raw in self.table(data, "upstreams", "upstreams").items()
            if (ups := self.upstream(name, raw, base_timeouts, base_ejection))
        }
        upstreams = {up.name: up for ups in groups.values() for up in ups}
        routes_raw = self.table(data, "routes", "routes")
        if not routes_raw:
            self.err("routes", "at least one route is required")
        defined = frozenset(self.table(data, "upstreams", "upstreams"))
        cache = read_settings(self, self.table(data, "cache", "cache"))
        routes = RouteCompiler(
            self, routes_raw, groups, defined, defaults.max_attempts, cache
        ).run()
        state = self.state(self.table(data, "state", "state"))
        if cache.store == "redis" and state.backend != "redis":
            self.err("cache.store", 'redis needs [state] backend = "redis" (its url is used)')
        if self.errors:
            return None
        return Config(
            server=server,
            upstreams=MappingProxyType(upstreams),
            routes=MappingProxyType(routes),
            panic=defaults.panic,
            max_rate_limit_pause_s=defaults.max_rate_limit_pause_s,
            reserve_max_tokens=defaults.reserve_max_tokens,
            admin=admin,
            tracing=tracing,
            state=state,
            cache=cache,
            secrets=tuple(self.secrets),
        )

    def server(self, raw: Mapping[str, object]) -> Server:
        self.known(raw, SERVER_KEYS, "server")
        host, port = "127.0.0.1", 8080
        listen = raw.get("listen", "127.0.0.1:8080")
        parsed = parse_listen(listen) if isinstance(listen, str) else None
        if parsed is None:
            self.err("server.listen", 'must be "HOST:PORT" with a port from 0 to 65535')
        else:
            host, port = parsed
        if raw.get("workers") == "auto":
            workers = os.cpu_count() or 1
        else:
            workers = self.integer(raw, "workers", "server", 1, lo=1)
        return self.read(Server, raw, "server", host=host, port=port, workers=workers)

    def admin(self, raw: object, server: Server) -> Admin | None:
        if not isinstance(raw, Mapping):
            self.err("admin", "must be a table")
            return None
        self.known(raw, ADMIN_KEYS, "admin")
        host, port = "127.0.0.1", 9090
        listen = raw.get("listen", "127.0.0.1:9090")
        parsed = parse_listen(listen) if isinstance(listen, str) else None
        if parsed is None:
            self.err("admin.listen", 'must be "HOST:PORT" with a port from 0 to 65535')
        else:
            host, port = parsed
            if port != 0 and (host, port) == (server.host, server.port):
                self.err("admin.listen", "must differ from server.listen (the public port)")
        token_ref = self.string(raw, "token", "admin")
        token = self.credential(token_ref, "admin.token")
        if token_ref is None and not (
            raw.get("loopback_without_token") is True or raw.get("metrics_open") is True
        ):
            self.err(
                "admin.token",
                'is required (e.g. "env:GATEWAY_ADMIN_TOKEN"), unless '
                "loopback_without_token or metrics_open is true",
            )
        return self.read(
            Admin, raw, "admin", host=host, port=port, token_ref=token_ref, token=token
        )

    def state(self, raw: Mapping[str, object]) -> StateSettings:
        self.known(raw, STATE_KEYS, "state")
        settings = self.read(StateSettings, raw, "state")
        ref = self.string(raw, "url", "state")
        if settings.backend != "redis":
            return settings
        if ref is None:
            self.err("state.url", 'is required with backend = "redis"')
            return settings
        url = self.credential(ref, "state.url") if ref.startswith("env:") else ref
        if url is None:
            return settings
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix") or not (parts.hostname or parts.path):
            self.err("state.url", "must be a redis://, rediss:// or unix:// URL")
            return settings
        if parts.password and not ref.startswith("env:"):
            self.err("state.url", 'carries a password: write it as "env:VARIABLE"')
        elif parts.password:
            self.secrets.append(parts.password)
        shown = ref if ref.startswith("env:") else url
        return dataclasses.replace(settings, url=url, url_ref=shown)

    def ejection(self, parent: Mapping[str, object], path: str, base: Ejection) -> Ejection:
        p = f"{path}.ejection"
        raw = self.table(parent, "ejection", p)
        self.known(raw, EJECTION_KEYS, p)
        return self.read(Ejection, raw, p, base)

    def upstream(
        self, name: str, raw: object, timeouts: Timeouts, ejection: Ejection
    ) -> tuple[Upstream, ...]:
        """One upstream, or one per credential when `credential` lists several (NAME#1 ...)."""
        path = f"upstreams.{name}"
        if not isinstance(raw, Mapping):
            self.err(path, "must be a table")
            return ()
        if "#" in name:
            self.err(path, 'an upstream name must not contain "#" (it numbers credentials)')
        n_errors = len(self.errors)
        self.known(raw, UPSTREAM_KEYS, path)
        preset_name, preset = self.provider(raw, path)
        default_url = preset.base_url
        if preset.dialect is Provider.BEDROCK:
            default_url = bedrock.default_base_url(raw)
        base_url, query = self.base_url(raw, path, default_url)
        refs = self.credential_refs(raw, path)
        given: dict[str, Any] = {}
        if preset.dialect is Provider.BEDROCK:
            given.update(bedrock.bedrock_fields(self, raw, path, refs, self.credential))
        if "stream_usage" not in raw:
            given["stream_usage"] = preset.stream_usage
        if "responses" not in raw:
            given["responses"] = preset.responses
        if "short_tool_ids" not in raw:
            given["short_tool_ids"] = preset.short_tool_ids
        base = self.read(
            Upstream,
            raw,
            path,
            name=name,
            provider=preset.dialect,
            preset=preset_name,
            base_url=base_url,
            query=query,
            credential_ref=None,
            credential=None,
            timeouts=self.read(Timeouts, raw, path, timeouts),
            ejection=self.ejection(raw, path, ejection),
            price=self.price(raw, path),
            health=read_health(self, raw.get("health"), f"{path}.health", preset.dialect.value),
            fingerprint="",
            **given,
        )
        if base.provider is Provider.AZURE:
            for key in ("deployment", "api_version"):
                if getattr(base, key) is None:
                    self.err(f"{path}.{key}", 'is required with provider = "azure"')
        ups: list[Upstream] = []
        for i, ref in enumerate(refs or [None]):
            where = f"{path}.credential" + (f"[{i}]" if len(refs) > 1 else "")
            credential = self.credential(ref, where)
            secret_id = hashlib.sha256((credential or "").encode()).hexdigest()[:16]
            fingerprint = f"{base.provider}|{base_url}?{query}|{base.model}|{secret_id}"
            fingerprint += f"|{base.deployment}|{base.api_version}|{base.anthropic_version}"
            key_id = hashlib.sha256((base.aws_key_id or "").encode()).hexdigest()[:16]
            fingerprint += f"|{base.region}|{key_id}"
            ups.append(
                dataclasses.replace(
                    base,
                    name=f"{name}#{i + 1}" if len(refs) > 1 else name,
                    credential_ref=ref,
                    credential=credential,
                    fingerprint=fingerprint,
                )
            )
        return () if len(self.errors) > n_errors else tuple(ups)

    def price(self, parent: Mapping[str, object], path: str) -> Price | None:
        if "price" not in parent:
            return None
        p = f"{path}.price"
        raw = self.table(parent, "price", p)
        self.known(raw, PRICE_KEYS, p)
        return self.read(Price, raw, p)

    def provider(self, raw: Mapping[str, object], path: str) -> tuple[str, Preset]:
        name = self.string(raw, "provider", path) or Provider.OPENAI.value
        preset = PRESETS.get(name)
        if preset is None:
            supported = ", ".join(PRESETS)
            self.err(f"{path}.provider", f'unknown provider "{name}" (supported: {supported})')
            return Provider.OPENAI.value, PRESETS[Provider.OPENAI.value]
        return name, preset

    def credential_refs(self, raw: Mapping[str, object], path: str) -> list[str]:
        """`credential = "env:K"` or `credential = ["env:K1", "env:K2"]` (one upstream per key)."""
        value = raw.get("credential")
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            if len(set(value)) < len(value):
                self.err(f"{path}.credential", "lists the same credential twice")
            return [str(v) for v in value]
        self.err(f"{path}.credential", 'must be "env:NAME" or a non-empty list of them')
        return []

    def base_url(
        self, raw: Mapping[str, object], path: str, default: str | None = None
    ) -> tuple[str, str]:
        """The base URL without a trailing slash, and its query (kept for every request)."""
        if "base_url" not in raw and default is not None:
            return default, ""
        if "base_url" not in raw:
            self.err(f"{path}.base_url", "is required")
            return "", ""
        url = self.string(raw, "base_url", path)
        if url is None:
            return "", ""
        try:
            parts = urlsplit(url)
            host, _port = parts.hostname, parts.port
        except ValueError:
            self.err(f"{path}.base_url", "must be a valid URL (check the host and port)")
            return url, ""
        if parts.scheme not in ("http", "https") or not host:
            self.err(f"{path}.base_url", "must be an http:// or https:// URL with a host")
        elif parts.fragment or parts.username or parts.password:
            self.err(f"{path}.base_url", "must not carry a fragment or user info")
        base = parts._replace(query="", fragment="").geturl()
        return base.rstrip("/"), parts.query

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
