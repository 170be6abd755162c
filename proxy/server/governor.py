"""Governance at the edge: authenticate, reserve limits and budgets, settle spend, ledger rows."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import aiohttp

from proxy.config.values import Config
from proxy.core.exchange import Exchange, Usage
from proxy.governance import denials
from proxy.governance.estimate import request_tokens, tokens_of
from proxy.governance.keyhash import hash_key, presented_key
from proxy.governance.ledger import Ledger, Row, connect
from proxy.governance.ledgerquery import spent
from proxy.governance.limits import Key, KeyTable
from proxy.governance.prices import SnapshotPrices, cost, estimate_cost
from proxy.governance.pricetable import shipped
from proxy.governance.reservations import Ask, Claim, Crossing, Hold
from proxy.ops import logs
from proxy.routing.stats import StatsRegistry
from proxy.state.base import LimitState
from proxy.state.memory import MemoryState
from proxy.state.shared import SharedState


class Governor:
    """Owns the keys table (swapped on reload), the limits state and the ledger."""

    def __init__(
        self,
        keys: KeyTable | None = None,
        state: LimitState | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        self.keys = keys
        self.state: LimitState = state if state is not None else MemoryState()
        self.ledger = ledger
        self.webhook: str | None = None
        self.registry: StatsRegistry | None = None
        """Upstream stats, to correct capacity (provider tpm) use with real usage."""
        self.clock: Callable[[], float] = time.time
        """Wall-clock seconds for limit windows and budget periods (a test can turn it)."""
        self._snap: Config | None = None
        self._prices: SnapshotPrices | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    def prices(self, snap: Config) -> SnapshotPrices:
        """Resolved once per snapshot, not per request."""
        if self._snap is not snap or self._prices is None:
            self._prices = SnapshotPrices(snap, shipped())
            self._snap = snap
        return self._prices

    def authenticate(self, ex: Exchange) -> Key | None:
        """Who is calling: None when the gateway is open; 401 for a bad or missing key."""
        key = self.key_of(ex.client_headers, ex.wall_started)
        if key is not None:
            ex.key_name = key.name
            ex.team = key.team
        return key

    def key_of(self, headers: Mapping[str, str], now: float) -> Key | None:
        """The usable key the headers present (one hash, one dict lookup); None when open."""
        table = self.keys
        if table is None:
            return None
        secret = presented_key(headers)
        if secret is None:
            raise denials.unauthorized(missing=True)
        key = table.by_hash.get(hash_key(table.salt, secret))
        if key is None or not key.usable(now):
            raise denials.unauthorized(missing=False)
        return key

    async def admit(self, ex: Exchange, key: Key | None) -> None:
        """May this key call this route now: 403, or a 429 from limits and budgets."""
        if key is None:
            return
        route = ex.route
        assert route is not None
        assert ex.peek is not None
        # The route the client named: rules and splits may move it on, within what it allows.
        if key.routes is not None and ex.peek.model not in key.routes:
            raise denials.model_not_allowed(ex.peek.model)
        claims: list[Claim] = []
        if key.limits.any:
            claims.append(Claim(f"key:{key.name}", key.limits))
        team = None if key.team is None or self.keys is None else self.keys.teams.get(key.team)
        if team is not None and team.limits.any:
            claims.append(Claim(f"team:{team.name}", team.limits))
        if not claims:
            return
        tokens_in, tokens_out = request_tokens(ex)
        usd = estimate_cost(tokens_in, tokens_out, self.prices(ex.snap).by_route.get(route.name))
        ask = Ask(tuple(claims), tokens_in + tokens_out, usd)
        got = await self.state.reserve(ask, self.clock())
        if not isinstance(got, Hold):
            label = f"key {key.name}" if got.scope.startswith("key:") else f"team {key.team}"
            raise denials.refused(got, label)
        ex.reservation = got

    def cost_of(self, ex: Exchange, usage: Usage | None) -> float:
        if usage is None or ex.upstream is None:
            return 0.0
        return cost(usage, self.prices(ex.snap).by_upstream.get(ex.upstream))

    def settle_now(self, ex: Exchange) -> bool:
        """`settle` without a coroutine when no reservation is held (an open gateway, a key
        without limits): True when done; False: the caller awaits `settle`."""
        if isinstance(ex.reservation, Hold):
            return False
        self._book(ex, self._price(ex))
        return True

    async def settle(self, ex: Exchange) -> None:
        """Exactly once per request: real usage and cost into limits, budgets and the ledger."""
        usage = self._price(ex)
        usd = ex.cost_usd or 0.0
        hold = ex.reservation
        if isinstance(hold, Hold):
            ex.reservation = None
            now = self.clock()
            if usage is None:
                await self.state.refund(hold, now)
            else:
                # A cache hit counts as a request (admission did that) but uses no tokens.
                used = 0 if ex.cache == "hit" else usage.tokens_in + usage.tokens_out
                crossed = await self.state.settle(hold, used, usd, now)
                for c in crossed:
                    self._soft_limit(c)
        self._book(ex, usage)

    def _price(self, ex: Exchange) -> Usage | None:
        """The request's usage (estimated if the provider reported none) and its cost."""
        usage = ex.usage
        answered = ex.upstream_status is not None and ex.upstream_status < 400
        # A stream the client left is still billed by the provider for what it generated.
        streamed = ex.status == 499 and ex.out_tokens_guess > 0
        if usage is None and answered and (ex.status == 200 or streamed):
            usage = Usage(
                tokens_in=tokens_of(len(ex.body)), tokens_out=ex.out_tokens_guess, estimated=True
            )
            ex.usage = usage
            ex.cost_usd = None  # priced again on the estimate
        usd = ex.cost_usd
        if usd is None:
            ex.cost_usd = usd = self.cost_of(ex, usage)
        if usage is not None and self.registry is not None:
            self._correct_capacity(ex, usage)
        return usage

    def _book(self, ex: Exchange, usage: Usage | None) -> None:
        """The ledger row of a settled request."""
        ledger = self.ledger
        if ledger is not None:
            ledger.add(_row(ex, usage, ex.cost_usd or 0.0))
            if ledger.error is not None:
                self._ledger_failed(ledger)

    def _correct_capacity(self, ex: Exchange, usage: Usage) -> None:
        """The answering upstream's provider-tpm use: the estimate counted at the attempt,
        replaced by the real tokens."""
        up = ex.snap.upstreams.get(ex.upstream or "")
        if up is None or up.tpm is None or self.registry is None:
            return
        estimate = sum(request_tokens(ex))
        real = usage.tokens_in + usage.tokens_out
        self.registry.get(up).capacity.tokens.add(real - estimate, time.monotonic())

    def _soft_limit(self, c: Crossing) -> None:
        fields = {
            "scope": c.scope,
            "budget": c.budget,
            "period": c.period,
            "spent_usd": round(c.spent_usd, 6),
            "limit_usd": c.limit_usd,
        }
        logs.warning("budget_soft_limit", **fields)
        if self.webhook:
            task = asyncio.get_running_loop().create_task(self._post(self.webhook, fields))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _post(self, url: str, fields: dict[str, object]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        try:
            async with self._session.post(url, json={"event": "budget_soft_limit", **fields}) as r:
                if r.status >= 300:
                    logs.warning("budget_webhook_failed", status=r.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            logs.warning("budget_webhook_failed", error=type(exc).__name__)

    def _ledger_failed(self, ledger: Ledger) -> None:
        taken = ledger.take_error()
        if taken is not None:
            logs.error("ledger_write_failed", error=taken[0], rows_dropped=taken[1])

    async def restore(self) -> None:
        """Spending so far this day, month and ever, from the ledger: a restart resets nothing."""
        if self.ledger is None:
            return
        path = self.ledger.path
        spent = await asyncio.get_running_loop().run_in_executor(None, _read_spent, path)
        await self.state.restore(spent)
        logs.event("spend_restored", ledger=str(path), scopes=len({s for s, _ in spent}))

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        if self._session is not None:
            await self._session.close()
        if self.ledger is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.ledger.close)
            self._ledger_failed(self.ledger)
        if isinstance(self.state, SharedState):
            await self.state.close()


def _read_spent(path: Path) -> dict[tuple[str, str], float]:
    conn = connect(path)
    try:
        return spent(conn, time.time())
    finally:
        conn.close()


def _row(ex: Exchange, usage: Usage | None, usd: float) -> Row:
    return Row(
        ts=ex.wall_started,
        request_id=ex.id,
        key=ex.key_name,
        team=ex.team,
        route=None if ex.route is None else ex.route.name,
        upstream=ex.upstream,
        endpoint=ex.endpoint.value,
        tokens_in=None if usage is None else usage.tokens_in,
        tokens_out=None if usage is None else usage.tokens_out,
        tokens_cached=None if usage is None else usage.tokens_cached,
        cost_usd=usd,
        status=ex.status,
        ttfb_ms=None if ex.ttfb_s is None else round(ex.ttfb_s * 1000, 2),
        duration_ms=round((time.monotonic() - ex.started) * 1000, 2),
        failure=None if ex.failure is None else str(ex.failure),
        estimated=usage is not None and usage.estimated,
        cache=ex.cache,
        arm=ex.arm,
        tokens_cache_write=None if usage is None else usage.tokens_cache_write,
    )
