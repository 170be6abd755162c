"""Request rewrites that keep a prompt-cache prefix stable: tool order, breakpoints, cache TTLs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from proxy.config.agent import Hygiene

_MARK = b'"cache_control"'


def tidy(body: bytes, rules: Hygiene) -> bytes:
    """The body with the route's hygiene rules applied; the same bytes when nothing changes
    (or it is not a JSON object: the upstream will say what is wrong with it)."""
    if not rules.sort_tools and _MARK not in body:
        return body  # breakpoints and TTLs live in cache_control: nothing to do without one
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if not isinstance(obj, dict):
        return body
    changed = False
    if rules.sort_tools:
        changed |= sort_tools(obj)
    if rules.strip_cache_ttl:
        changed |= strip_cache_ttl(obj)
    if rules.max_breakpoints is not None:
        changed |= cap_breakpoints(obj, rules.max_breakpoints)
    return orjson.dumps(obj) if changed else body


def _tool_name(tool: object) -> str:
    if not isinstance(tool, dict):
        return ""
    fn = tool.get("function")
    name = fn.get("name") if isinstance(fn, dict) else tool.get("name")
    return name if isinstance(name, str) else ""


def sort_tools(obj: dict[str, Any]) -> bool:
    """Tools sorted by name (OpenAI `function.name` or Anthropic `name`), stable for equal names.

    A breakpoint on the last tool (it caches the whole tool list) stays on the last tool.
    """
    tools = obj.get("tools")
    if not isinstance(tools, list) or len(tools) < 2:
        return False
    ordered = sorted(tools, key=_tool_name)
    if ordered == tools:
        return False
    last = tools[-1]
    mark = last.get("cache_control") if isinstance(last, dict) else None
    if mark is not None and ordered[-1] is not last and isinstance(ordered[-1], dict):
        at = next(i for i, t in enumerate(ordered) if t is last)
        ordered[at] = {k: v for k, v in last.items() if k != "cache_control"}
        ordered[-1] = {**ordered[-1], "cache_control": mark}
    obj["tools"] = ordered
    return True


def breakpoints(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every block carrying `cache_control`, in prefix order: tools, system, messages."""
    tools = obj.get("tools")
    if isinstance(tools, list):
        yield from (t for t in tools if isinstance(t, dict) and "cache_control" in t)
    system = obj.get("system")
    if isinstance(system, list):
        yield from (b for b in system if isinstance(b, dict) and "cache_control" in b)
    messages = obj.get("messages")
    if not isinstance(messages, list):
        return
    for m in messages:
        if not isinstance(m, dict):
            continue
        content = m.get("content")
        if isinstance(content, list):
            yield from (b for b in content if isinstance(b, dict) and "cache_control" in b)
        if "cache_control" in m:
            yield m


def cap_breakpoints(obj: dict[str, Any], limit: int) -> bool:
    """At most `limit` breakpoints: the earliest extra ones are dropped (the later ones cover
    the longer prefixes, which is what a cache read needs); never an error."""
    found = list(breakpoints(obj))
    extra = len(found) - limit
    for block in found[: max(extra, 0)]:
        del block["cache_control"]
    return extra > 0


def strip_cache_ttl(obj: dict[str, Any]) -> bool:
    """`cache_control.ttl` removed everywhere (upstreams that only know the default TTL)."""
    changed = False
    for block in breakpoints(obj):
        mark = block["cache_control"]
        if isinstance(mark, dict) and "ttl" in mark:
            block["cache_control"] = {k: v for k, v in mark.items() if k != "ttl"}
            changed = True
    return changed


def asks_long_ttl(obj: dict[str, Any]) -> bool:
    """Whether any breakpoint asks for the 1 h cache lifetime."""
    return any(
        isinstance(mark := b["cache_control"], dict) and mark.get("ttl") == "1h"
        for b in breakpoints(obj)
    )
