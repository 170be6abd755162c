"""A request on a route with agent settings: cache hygiene applied, affinity key computed."""

from __future__ import annotations

from dataclasses import replace

from proxy.config.agent import AgentTraffic
from proxy.core.exchange import Exchange
from proxy.providers.cache_hygiene import tidy
from proxy.providers.responses_ids import previous_response_id
from proxy.routing.affinity import affinity_key


def prepare(ex: Exchange, agent: AgentTraffic) -> None:
    """Rewrite the body by the route's hygiene rules, then key it for affinity (after the
    rewrite, so the key is that of the prefix the upstream will cache)."""
    rules = agent.cache_hygiene
    if rules is not None:
        body = tidy(ex.body, rules)
        if body is not ex.body and ex.peek is not None:
            ex.peek = replace(ex.peek, model_span=None)  # the peeked offsets moved
        ex.body = body
    if agent.affinity is not None:
        found = affinity_key(ex.client_headers, ex.body, agent.affinity_header)
        if found is not None:
            ex.affinity_key = found[0]
            ex.affinity_ttl_s = agent.affinity_long_ttl_s if found[1] else agent.affinity_ttl_s


def follow_response(ex: Exchange) -> None:
    """A Responses request that continues a stored response goes where that response lives."""
    previous = previous_response_id(ex.body)
    if previous is not None:
        ex.affinity_key = "r:" + previous
        ex.affinity_strict = True
