"""Prices and cost: an upstream's price (own, or the shipped table's by model) and USD per usage."""

from __future__ import annotations

from collections.abc import Mapping

from proxy.config.values import Config, Price, Upstream
from proxy.core.exchange import Usage

FREE = Price()


def table_from(data: Mapping[str, object]) -> dict[str, Price]:
    """The shipped table's `models` (name -> [input, output, cached?, cache write?]) as Prices."""
    models = data.get("models")
    out: dict[str, Price] = {}
    if not isinstance(models, Mapping):
        return out
    for name, row in models.items():
        if isinstance(row, list) and len(row) >= 2:
            cached = float(row[2]) if len(row) > 2 and row[2] is not None else None
            out[name] = Price(
                input_per_mtok=float(row[0]),
                output_per_mtok=float(row[1]),
                cached_input_per_mtok=cached,
                cache_write_per_mtok=float(row[3]) if len(row) > 3 else None,
            )
    return out


def price_of(up: Upstream, table: Mapping[str, Price]) -> Price | None:
    """The upstream's `price`, else the table's entry for its model (also without a
    `provider/` prefix); None when nothing is known (costed 0; `gateway check` warns)."""
    if up.price is not None:
        return up.price
    if up.model is None:
        return None
    found = table.get(up.model)
    if found is None and "/" in up.model:
        found = table.get(up.model.rsplit("/", 1)[1])
    return found


def cost(usage: Usage, price: Price | None) -> float:
    """USD for one answer; prompt tokens read from (or written to) the provider's cache at the
    cached (cache-write) price: both are part of tokens_in."""
    if price is None:
        return 0.0
    cached = min(usage.tokens_cached, usage.tokens_in)
    written = min(usage.tokens_cache_write, usage.tokens_in - cached)
    base = price.input_per_mtok
    cached_price = base if price.cached_input_per_mtok is None else price.cached_input_per_mtok
    write_price = base if price.cache_write_per_mtok is None else price.cache_write_per_mtok
    return (
        (usage.tokens_in - cached - written) * base
        + cached * cached_price
        + written * write_price
        + usage.tokens_out * price.output_per_mtok
    ) / 1e6


def estimate_cost(tokens_in: int, tokens_out: int, price: Price | None) -> float:
    if price is None:
        return 0.0
    return (tokens_in * price.input_per_mtok + tokens_out * price.output_per_mtok) / 1e6


class SnapshotPrices:
    """Prices resolved once per config snapshot: by upstream, and each route's dearest (the
    price a reservation assumes, since any upstream of the chain may answer)."""

    __slots__ = ("by_route", "by_upstream", "unpriced")

    def __init__(self, config: Config, table: Mapping[str, Price]) -> None:
        self.by_upstream: dict[str, Price | None] = {
            name: price_of(up, table) for name, up in config.upstreams.items()
        }
        self.unpriced = sorted(n for n, p in self.by_upstream.items() if p is None)
        self.by_route: dict[str, Price | None] = {}
        for name, route in config.routes.items():
            prices = [
                p
                for tier in route.tiers
                for m in tier.members
                if (p := self.by_upstream.get(m.upstream.name)) is not None
            ]
            self.by_route[name] = (
                max(prices, key=lambda p: p.input_per_mtok + p.output_per_mtok) if prices else None
            )
