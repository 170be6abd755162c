"""[cache] and a route's `cache = {...}`: defaults, overrides, and mistakes named by path."""

from __future__ import annotations

import pytest

from proxy.config.compiler import compile_text
from proxy.config.values import ConfigError

BASE = """
[upstreams.a]
base_url = "http://127.0.0.1:9/v1"
model = "m"
[routes.plain]
tiers = [{ a = 1 }]
"""


def test_routes_without_cache_have_none_and_defaults_apply() -> None:
    cfg = compile_text(
        BASE + '[routes.c]\ntiers = [{ a = 1 }]\ncache = true\n[cache]\nttl_s = 9\nscope = "key"\n'
    )
    assert cfg.routes["plain"].cache is None
    rc = cfg.routes["c"].cache
    assert rc is not None
    assert (rc.ttl_s, rc.scope, rc.max_entry_bytes) == (9.0, "key", 1 << 20)
    assert cfg.cache.store == "auto"


def test_a_route_overrides_the_defaults() -> None:
    cfg = compile_text(
        BASE
        + '[routes.c]\ntiers = [{ a = 1 }]\ncache = { ttl_s = 30, max_entry_kb = 4, scope = "global" }\n'
    )
    rc = cfg.routes["c"].cache
    assert rc is not None
    assert (rc.ttl_s, rc.max_entry_bytes, rc.scope) == (30.0, 4096, "global")


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        ("[routes.c]\ntiers = [{ a = 1 }]\ncache = { tll_s = 3 }\n", "routes.c.cache.tll_s"),
        ('[routes.c]\ntiers = [{ a = 1 }]\ncache = "yes"\n', "routes.c.cache"),
        ('[routes.c]\ntiers = [{ a = 1 }]\ncache = { scope = "all" }\n', "routes.c.cache.scope"),
        ("[cache]\nttl_s = -1\n", "cache.ttl_s"),
        ('[cache]\nstore = "redis"\n', "cache.store"),
    ],
)
def test_mistakes_are_named_by_their_toml_path(extra: str, path: str) -> None:
    with pytest.raises(ConfigError) as err:
        compile_text(BASE + extra)
    assert any(e.startswith(path) for e in err.value.errors), err.value.errors
