"""The shipped price table (data/prices.json, with its licence in data/NOTICE), loaded once."""

from __future__ import annotations

import functools
from importlib import resources

import orjson

from proxy.config.values import Price
from proxy.governance.prices import table_from


@functools.cache
def shipped() -> dict[str, Price]:
    """Model id -> price, from the table shipped in the package (read at most once)."""
    raw = resources.files("proxy.governance").joinpath("data/prices.json").read_bytes()
    return table_from(orjson.loads(raw))


def retrieved() -> str:
    raw = resources.files("proxy.governance").joinpath("data/prices.json").read_bytes()
    return str(orjson.loads(raw).get("retrieved", "unknown"))
