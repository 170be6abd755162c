"""Compile [routes]: tiers, strategies, and fallback chains flattened without cycles."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from proxy.config.agent import AGENT_KEYS, AgentTraffic, read_agent
from proxy.config.caching import CacheSettings, RouteCache, read_route_cache
from proxy.config.hedging import Hedge, read_hedge
from proxy.config.keysource import KeySource, read_key_source
from proxy.config.reader import Reader, keys_of
from proxy.config.rules import Rule, Split, read_rules, read_split
from proxy.config.values import Member, Route, Strategy, Tier, Timeouts, Upstream

ROUTE_KEYS = keys_of(Route, Timeouts) | AGENT_KEYS


@dataclass(slots=True)
class RouteCompiler:
    """Second pass over [routes]: tiers, strategies, fallback chains flattened without cycles."""

    c: Reader
    raw: Mapping[str, object]
    upstreams: Mapping[str, tuple[Upstream, ...]]
    """By the name in the file: one upstream, or one per credential (NAME#1, NAME#2 ...)."""
    defined: frozenset[str]
    """Every upstream name in the file, valid or not (invalid ones already have their error)."""
    max_attempts: int
    cache: CacheSettings = field(default_factory=CacheSettings)
    """[cache]: the defaults of a route's `cache = {...}`."""
    own: dict[str, tuple[Tier, ...]] = field(default_factory=dict)
    meta: dict[str, tuple[Strategy, int, tuple[str, ...]]] = field(default_factory=dict)
    hedges: dict[str, Hedge] = field(default_factory=dict)
    caches: dict[str, RouteCache] = field(default_factory=dict)
    sticky: dict[str, KeySource] = field(default_factory=dict)
    rules: dict[str, tuple[Rule, ...]] = field(default_factory=dict)
    splits: dict[str, Split] = field(default_factory=dict)
    agents: dict[str, AgentTraffic] = field(default_factory=dict)

    def run(self) -> dict[str, Route]:
        for name, raw in self.raw.items():
            self.first_pass(name, raw)
        self.check_redirects()
        routes: dict[str, Route] = {}
        for name, (strategy, max_attempts, fallback) in self.meta.items():
            tiers = self.flatten(name, (name,))
            if tiers is None:
                continue
            routes[name] = Route(
                name=name,
                strategy=strategy,
                tiers=tiers,
                max_attempts=max_attempts,
                fallback=fallback,
                hedge=self.hedges.get(name),
                cache=self.caches.get(name),
                sticky_key=self.sticky.get(name),
                sticky=any(t.sticky_key is not None for t in tiers),
                rules=self.rules.get(name, ()),
                split=self.splits.get(name),
                redirects=name in self.rules or name in self.splits,
                agent=self.agents.get(name),
            )
        return routes

    def first_pass(self, name: str, raw: object) -> None:
        c, path = self.c, f"routes.{name}"
        if not isinstance(raw, Mapping):
            c.err(path, "must be a table")
            return
        c.known(raw, ROUTE_KEYS, path)
        strategy_text = raw.get("strategy", "weighted")
        try:
            strategy = Strategy(str(strategy_text))
        except ValueError:
            choices = " | ".join(s.value for s in Strategy)
            c.err(f"{path}.strategy", f'unknown strategy "{strategy_text}" ({choices})')
            strategy = Strategy.WEIGHTED
        fallback_raw = raw.get("fallback", [])
        fallback: tuple[str, ...] = ()
        if isinstance(fallback_raw, list) and all(isinstance(f, str) for f in fallback_raw):
            fallback = tuple(str(f) for f in fallback_raw)
            for i, target in enumerate(fallback):
                if target not in self.raw:
                    c.err(f"{path}.fallback[{i}]", f'unknown route "{target}"')
        else:
            c.err(f"{path}.fallback", "must be a list of route names")
        self.sticky_key(name, raw, strategy)
        tiers_raw = raw.get("tiers", [])
        if not isinstance(tiers_raw, list):
            c.err(f"{path}.tiers", "must be a list of tables { upstream = weight }")
            tiers_raw = []
        self.redirect(name, raw, bool(tiers_raw or fallback))
        overrides = c.present(Timeouts, raw, path)
        tiers = tuple(
            t
            for i, tier_raw in enumerate(tiers_raw)
            if (t := self.tier(name, i, tier_raw, strategy, overrides)) is not None
        )
        self.own[name] = tiers
        attempts = c.integer(raw, "max_attempts", path, self.max_attempts, lo=1)
        self.meta[name] = (strategy, attempts, fallback)
        hedge = read_hedge(c, raw.get("hedge"), f"{path}.hedge")
        if hedge is not None:
            self.hedges[name] = hedge
        cache = read_route_cache(c, raw.get("cache"), f"{path}.cache", self.cache)
        if cache is not None:
            self.caches[name] = cache
        agent = read_agent(c, raw, path)
        if agent is not None:
            self.agents[name] = agent

    def redirect(self, name: str, raw: Mapping[str, object], has_tiers: bool) -> None:
        """`rules` and `split`: read here, targets checked once every route is known."""
        c, path = self.c, f"routes.{name}"
        rules = read_rules(c, raw.get("rules"), f"{path}.rules")
        if rules:
            self.rules[name] = rules
        split = read_split(c, raw, path)
        if split is not None:
            self.splits[name] = split
            if has_tiers:
                c.err(f"{path}.split", "a split route has no tiers or fallback of its own")
        elif not has_tiers and "split" not in raw:
            c.err(f"{path}.tiers", "a route needs at least one tier or a fallback")

    def check_redirects(self) -> None:
        """Every `then` and split arm names a route; following them never loops."""
        edges: dict[str, list[str]] = {}
        for name, rules in self.rules.items():
            for i, rule in enumerate(rules):
                if rule.then not in self.raw:
                    self.c.err(f"routes.{name}.rules[{i}].then", f'unknown route "{rule.then}"')
                edges.setdefault(name, []).append(rule.then)
        for name, split in self.splits.items():
            for arm, _ in split.arms:
                if arm not in self.raw:
                    self.c.err(f"routes.{name}.split.{arm}", f'unknown route "{arm}"')
                edges.setdefault(name, []).append(arm)
        done: set[str] = set()
        for start in edges:
            cycle = _cycle(start, edges, (start,), done)
            if cycle is not None:
                self.c.err(f"routes.{start}", f"rules or split loop: {' -> '.join(cycle)}")
                return

    def sticky_key(self, name: str, raw: Mapping[str, object], strategy: Strategy) -> None:
        c, path = self.c, f"routes.{name}.sticky_key"
        if strategy is not Strategy.STICKY:
            if "sticky_key" in raw:
                c.err(path, 'applies only with strategy = "sticky"')
            return
        if "sticky_key" not in raw:
            c.err(path, 'is required with strategy = "sticky"')
            return
        sticky = read_key_source(c, raw["sticky_key"], path, ("header", "user"))
        if sticky is not None:
            self.sticky[name] = sticky

    def tier(
        self,
        route: str,
        index: int,
        raw: object,
        strategy: Strategy,
        overrides: Mapping[str, Any],
    ) -> Tier | None:
        c, path = self.c, f"routes.{route}.tiers[{index}]"
        if not isinstance(raw, Mapping) or not raw:
            c.err(path, "must be a non-empty table { upstream = weight }")
            return None
        members: list[Member] = []
        for up_name, weight in raw.items():
            ups = self.upstreams.get(up_name)
            if ups is None:
                if up_name not in self.defined:
                    c.err(path, f'unknown upstream "{up_name}"')
                continue
            if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
                c.err(f"{path}.{up_name}", "weight must be an integer >= 0")
                continue
            for up in ups:  # each credential of a many-key upstream is a member of its own
                timeouts = replace(up.timeouts, **overrides) if overrides else up.timeouts
                members.append(Member(upstream=up, weight=weight, timeouts=timeouts))
        if not members:
            return None
        return Tier(
            key=f"{route}#{index}",
            strategy=strategy,
            members=tuple(members),
            origin=route,
            sticky_key=self.sticky.get(route),
        )

    def flatten(self, name: str, chain: tuple[str, ...]) -> tuple[Tier, ...] | None:
        if name not in self.meta:
            return None
        tiers = list(self.own.get(name, ()))
        for target in self.meta[name][2]:
            if target in chain:
                cycle = " -> ".join((*chain, target))
                self.c.err(f"routes.{chain[0]}.fallback", f"cycle {cycle}")
                return None
            sub = self.flatten(target, (*chain, target))
            if sub is None:
                return None
            tiers.extend(sub)
        unique: dict[str, Tier] = {}
        for t in tiers:
            unique.setdefault(t.key, t)
        return tuple(unique.values())


def _cycle(
    name: str, edges: Mapping[str, list[str]], chain: tuple[str, ...], done: set[str]
) -> tuple[str, ...] | None:
    """The first loop reachable from `name` through rules and splits, or None."""
    for target in edges.get(name, ()):
        if target in chain:
            return (*chain, target)
        if target in done:
            continue
        found = _cycle(target, edges, (*chain, target), done)
        if found is not None:
            return found
    done.add(name)
    return None
