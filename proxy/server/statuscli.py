"""`gateway status [--watch]`: the admin status of a running gateway as a terminal table."""

from __future__ import annotations

import argparse
import os
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson

DEFAULT_TOKEN_ENV = "GATEWAY_ADMIN_TOKEN"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("status", help="show upstreams, routes and the config of a running gateway")
    p.add_argument("--config", default="gateway.toml", help="gateway.toml ([admin] listen, token)")
    p.add_argument("--url", help="admin listener URL, in place of the file's [admin] listen")
    p.add_argument("--watch", nargs="?", type=float, const=2.0, help="refresh every N seconds")
    p.add_argument("--json", action="store_true", help="print the raw status document")


def run_status(ns: argparse.Namespace) -> int:
    try:
        url, token = _target(Path(ns.config), ns.url)
    except ValueError as exc:
        print(f"gateway status: {exc}", file=sys.stderr)
        return 1
    while True:
        try:
            doc = fetch(url, token)
        except (OSError, ValueError) as exc:
            print(f"gateway status: {url}: {exc}", file=sys.stderr)
            return 1
        text = orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() if ns.json else render(doc)
        if ns.watch is None:
            print(text)
            return 0
        print("\x1b[2J\x1b[H" + text, flush=True)
        try:
            time.sleep(max(ns.watch, 0.2))
        except KeyboardInterrupt:
            return 0


def _target(config: Path, url: str | None) -> tuple[str, str | None]:
    admin: dict[str, Any] = {}
    try:
        admin = tomllib.loads(config.read_text("utf-8")).get("admin", {})
    except (OSError, tomllib.TOMLDecodeError):
        if url is None:
            raise ValueError(f"cannot read [admin] from {config}; pass --url") from None
    if url is None:
        if not admin:
            raise ValueError(f"{config} has no [admin] section; add one or pass --url")
        host, _, port = str(admin.get("listen", "127.0.0.1:9090")).rpartition(":")
        host = host.strip("[]")
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    ref = str(admin.get("token", ""))
    var = ref[4:] if ref.startswith("env:") else DEFAULT_TOKEN_ENV
    return url.rstrip("/"), os.environ.get(var)


def fetch(url: str, token: str | None) -> dict[str, Any]:
    req = urllib.request.Request(url + "/admin/status")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            doc = orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise ValueError("401: set the variable that [admin] token names") from None
        raise ValueError(f"HTTP {exc.code}") from None
    if not isinstance(doc, dict):
        raise ValueError("not a status document")
    return doc


def render(doc: dict[str, Any]) -> str:
    """The status document as plain-text tables (no terminal library needed)."""
    cfg = doc.get("config", {})
    last = cfg.get("last_reload") or {}
    reload_text = "none since start"
    if last:
        reload_text = "ok" if last.get("ok") else "FAILED: " + "; ".join(last.get("errors", []))
    lines = [
        f"config generation {cfg.get('generation')}  sha256 {str(cfg.get('sha256', ''))[:12]}"
        f"  last reload: {reload_text}",
        "",
    ]
    rows: list[tuple[str, ...]] = [
        ("UPSTREAM", "STATE", "UNTIL", "EWMA TTFB", "IN FLIGHT", "STREAK", "EJECTIONS")
    ]
    for name, u in doc.get("upstreams", {}).items():
        ttfb = u.get("ewma_ttfb_ms")
        rows.append(
            (
                name,
                str(u.get("state", "")),
                f"{u['in_s']}s" if "in_s" in u else "",
                "" if ttfb is None else f"{ttfb} ms",
                str(u.get("inflight", "")),
                str(u.get("failure_streak", "")),
                str(u.get("ejections", "")),
            )
        )
    lines += _table(rows)
    lines.append("")
    rows = [("ROUTE", "TIER", "FROM", "STRATEGY", "UPSTREAMS (weight/effective)")]
    for rname, route in doc.get("routes", {}).items():
        for i, tier in enumerate(route.get("tiers", [])):
            members = " ".join(
                f"{n}={m['weight']}/{m['effective_weight']}"
                for n, m in tier.get("members", {}).items()
            )
            rows.append((rname if i == 0 else "", str(i), tier["from"], tier["strategy"], members))
    lines += _table(rows)
    return "\n".join(lines)


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
