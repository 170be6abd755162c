"""The response cache at the edge: find an answer or a flight to follow, record a miss, land it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson
from aiohttp import web

from proxy.cache.flight import Flight, Flights
from proxy.cache.key import cache_key
from proxy.cache.lru import Entry
from proxy.cache.redisstore import RedisStore, connect
from proxy.cache.replay import adapt_usage, complete, to_body, to_stream
from proxy.cache.store import CacheStore, MemoryStore
from proxy.config.caching import RouteCache
from proxy.config.values import Config, Endpoint
from proxy.core.errors import stream_error_event
from proxy.core.exchange import Exchange, Usage
from proxy.ops import logs
from proxy.transport.relay import STREAM_HEADERS, Sink

HEADER = "x-gateway-cache"
WHOLE_ONLY = frozenset({Endpoint.EMBEDDINGS, Endpoint.COMPLETIONS})
"""Endpoints whose JSON answers are cached; their stream requests pass by (`skip`). Chat is
cached both ways; Messages, Responses and count_tokens are not cached."""
_CUT = stream_error_event(
    "The shared upstream answer ended early.", "server_error", "upstream_error"
)


@dataclass(slots=True)
class Ticket:
    """A miss being recorded: what the client is sent, for the store and the followers."""

    key: str
    ttl_s: float
    max_bytes: int
    store: bool
    flight: Flight | None
    stream: bool = False
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0

    def add(self, data: bytes) -> None:
        if self.flight is not None:
            self.flight.add(data)
        self.size += len(data)
        if self.store and self.size <= self.max_bytes:
            self.chunks.append(data)

    def streaming(self) -> None:
        """The answer is a stream: its chunks are SSE, recorded as relayed."""
        self.stream = True
        if self.flight is not None:
            self.flight.stream = True


class Tap:
    """The client's stream, with every chunk written also recorded on the ticket."""

    __slots__ = ("out", "ticket")

    def __init__(self, out: Sink, ticket: Ticket) -> None:
        self.out = out
        self.ticket = ticket

    async def write(self, data: bytes) -> None:
        self.ticket.add(data)
        await self.out.write(data)

    async def write_eof(self, data: bytes = b"") -> None:
        await self.out.write_eof(data)


class ResponseCache:
    """The process's store and flights; `find` runs only on routes with `cache` set."""

    def __init__(self, store: CacheStore) -> None:
        self.store = store
        self.flights = Flights()

    async def find(self, ex: Exchange, rc: RouteCache) -> tuple[Entry | Flight | None, str]:
        """A stored entry (hit) or a flight to follow, with the key; (None, key): a miss with a
        ticket, or a skip."""
        read, write = _wanted(ex.client_headers)
        route = ex.route
        assert route is not None
        key = None
        if (read or write) and _cacheable(ex):
            key = cache_key(f"{ex.endpoint.value}:{route.name}", _scope(rc, ex), ex.body)
        if key is None:
            ex.cache = "skip"
            return None, ""
        flight = None
        if read:
            entry = await self.store.get(key)
            if entry is not None:
                ex.cache = "hit"
                return entry, key
            flight, leads = self.flights.join(key)
            if not leads:
                ex.cache = "hit"
                return flight, key
            flight.with_usage = ex.peek is not None and ex.peek.include_usage
        self.miss(ex, rc, key, write, flight)
        return None, key

    def miss(
        self, ex: Exchange, rc: RouteCache, key: str, store: bool, flight: Flight | None
    ) -> None:
        """This request asks upstream and records what its client gets."""
        ex.cache = "miss"
        ex.cache_ticket = Ticket(key, rc.ttl_s, rc.max_entry_bytes, store, flight)

    def land(self, ex: Exchange) -> None:
        """Exactly once per miss: store a complete success, release the followers."""
        t = ex.cache_ticket
        if not isinstance(t, Ticket):
            return
        ex.cache_ticket = None
        # Followers hold every chunk; the ticket stops keeping them past the entry cap.
        seen = t.flight.chunks if t.flight is not None else t.chunks
        ok = ex.status == 200 and ex.error_code is None and (not t.stream or complete(seen))
        if ok and t.store and t.size <= t.max_bytes and t.chunks:
            pk = ex.peek
            u = ex.usage
            entry = Entry(
                tuple(t.chunks),
                t.stream,
                0.0,
                pk is not None and pk.include_usage,
                None if u is None else (u.tokens_in, u.tokens_out, u.tokens_cached),
            )
            self.store.put(t.key, entry, t.ttl_s)
        if t.flight is not None:
            u = ex.usage
            t.flight.usage = None if u is None else (u.tokens_in, u.tokens_out, u.tokens_cached)
            self.flights.land(t.key, t.flight, ok)

    async def close(self) -> None:
        await self.store.close()


def open_cache(config: Config) -> ResponseCache:
    """Memory, or Redis when [cache] store says so (or `auto` and [state] is Redis)."""
    cs, st = config.cache, config.state
    if cs.store == "redis" or (cs.store == "auto" and st.backend == "redis"):
        logs.event("cache_store", store="redis")
        return ResponseCache(RedisStore(connect(st), st.prefix, st.timeout_s))
    # Each route caps its own entries (the ticket); the store caps only the total.
    return ResponseCache(MemoryStore(cs.max_total_bytes, cs.max_total_bytes))


def _wanted(headers: Mapping[str, str]) -> tuple[bool, bool]:
    """(may read, may store) from `Cache-Control` and `x-gateway-cache: skip`."""
    if headers.get(HEADER, "").strip().lower() == "skip":
        return False, False
    cc = headers.get("Cache-Control")
    if cc is None:
        return True, True
    words = {w.strip().split("=", 1)[0].lower() for w in cc.split(",")}
    if "no-store" in words:
        return False, False
    return "no-cache" not in words, True


def _cacheable(ex: Exchange) -> bool:
    if ex.endpoint is Endpoint.CHAT:
        return True
    return ex.endpoint in WHOLE_ONLY and not ex.stream


def _scope(rc: RouteCache, ex: Exchange) -> str:
    if rc.scope == "global":
        return "*"
    if rc.scope == "team" and ex.team is not None:
        return f"team:{ex.team}"
    return f"key:{ex.key_name or ''}"


def hit_usage(ex: Exchange, entry: Entry | None) -> None:
    """A hit is in the ledger with the tokens as recorded, and costs nothing."""
    ex.cost_usd = 0.0
    if entry is not None and entry.usage is not None:
        tin, tout, tcached = entry.usage
        ex.usage = Usage(tokens_in=tin, tokens_out=tout, tokens_cached=tcached)


def _usage_json(entry: Entry) -> bytes | None:
    if entry.usage is None:
        return None
    tin, tout, tcached = entry.usage
    usage = {"prompt_tokens": tin, "completion_tokens": tout, "total_tokens": tin + tout}
    if tcached:
        usage["prompt_tokens_details"] = {"cached_tokens": tcached}  # type: ignore[assignment]
    return orjson.dumps(usage)


def as_stream(ex: Exchange, entry: Entry) -> tuple[bytes, ...] | None:
    """The entry's SSE chunks for this client (its own include_usage choice)."""
    wants = ex.peek is not None and ex.peek.include_usage
    if not entry.stream:
        return to_stream(entry.chunks[0], wants)
    return adapt_usage(entry.chunks, entry.with_usage, wants, _usage_json(entry))


def as_body(entry: Entry) -> bytes | None:
    return entry.chunks[0] if not entry.stream else to_body(entry.chunks)


async def answer(
    request: web.BaseRequest, ex: Exchange, entry: Entry, headers: dict[str, str]
) -> web.StreamResponse | None:
    """A stored answer in the form this client asked for; None when it cannot be converted."""
    if ex.stream:
        chunks = as_stream(ex, entry)
        if chunks is None:
            return None
        headers.update(STREAM_HEADERS)
        out = web.StreamResponse(status=200, headers=headers)
        await out.prepare(request)
        ex.status = 200
        for chunk in chunks:
            await out.write(chunk)
        await out.write_eof()
        return out
    body = as_body(entry)
    if body is None:
        return None
    headers["Content-Type"] = "application/json"
    ex.status = 200
    return web.Response(status=200, body=body, headers=headers)


async def follow(
    request: web.BaseRequest, ex: Exchange, flight: Flight, headers: dict[str, str]
) -> web.StreamResponse | None:
    """The answer of an identical request in flight: a stream fanned out chunk by chunk as the
    leader relays it, else its whole answer once done. None: it failed before a byte reached
    this client (this request then asks upstream itself)."""
    out: web.StreamResponse | None = None
    got: list[bytes] = []
    wants = ex.peek is not None and ex.peek.include_usage
    async for chunk in flight.follow():
        if ex.stream and flight.stream and wants == flight.with_usage:
            if out is None:
                headers.update(STREAM_HEADERS)
                out = web.StreamResponse(status=200, headers=headers)
                await out.prepare(request)
                ex.status = 200
            await out.write(chunk)
        else:
            got.append(chunk)
    if out is not None:
        hit_usage(ex, Entry((), True, 0.0, usage=flight.usage))
        if not flight.ok and not complete(flight.chunks):
            await out.write(_CUT)
            ex.error_code = "upstream_error"
        await out.write_eof()
        return out
    if not flight.ok or not got:
        return None
    entry = Entry(tuple(got), flight.stream, 0.0, flight.with_usage, flight.usage)
    hit_usage(ex, entry)
    return await answer(request, ex, entry, headers)
