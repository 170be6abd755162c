"""`gateway keys ...` and `gateway usage`: manage keys.toml and report from the ledger."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import orjson

from proxy.config.values import ConfigError
from proxy.governance import keyfile
from proxy.governance.ledgerquery import GROUPS, merged, report

_LIMIT_ARGS = (
    ("--rpm", int, "requests per minute"),
    ("--tpm", int, "tokens per minute"),
    ("--max-parallel", int, "requests in flight"),
    ("--usd-per-day", float, "budget per UTC day"),
    ("--usd-per-month", float, "budget per UTC month"),
    ("--usd-total", float, "budget for all time"),
)


def add_parsers(sub: Any) -> None:
    keys = sub.add_parser("keys", help="create, list, disable, rotate or remove virtual keys")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    p = ksub.add_parser("new", help="create a key (printed once; only its hash is stored)")
    _common(p)
    p.add_argument("name")
    p.add_argument("--team")
    p.add_argument("--routes", help="comma-separated routes the key may use (default: all)")
    for flag, kind, text in _LIMIT_ARGS:
        p.add_argument(flag, type=kind, help=text)
    p.add_argument("--expires", type=dt.date.fromisoformat, help="last valid day, YYYY-MM-DD")
    p = ksub.add_parser("team", help="create or update a team's limits")
    _common(p)
    p.add_argument("name")
    for flag, kind, text in _LIMIT_ARGS:
        p.add_argument(flag, type=kind, help=text)
    _common(ksub.add_parser("list", help="list keys (names and limits, never secrets)"))
    for verb in ("disable", "enable", "rotate", "rm"):
        p = ksub.add_parser(verb, help=f"{verb} a key")
        _common(p)
        p.add_argument("name")
    p = sub.add_parser("usage", help="report requests, tokens and cost from the ledger")
    _common(p)
    p.add_argument("--by", choices=GROUPS, default="key")
    p.add_argument("--since", default="24h", help="e.g. 30m, 24h, 7d, all")
    p.add_argument(
        "--ledger",
        action="append",
        default=[],
        help="a ledger file to read instead of the configured one; repeat it to add up the "
        "ledgers of several gateway instances",
    )


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="gateway.toml", help="path of gateway.toml")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _server_section(config: Path) -> dict[str, Any]:
    """Only `[server]` of gateway.toml: the keys commands need no provider credentials."""
    try:
        data = tomllib.loads(config.read_text("utf-8"))
    except FileNotFoundError:
        return {}
    server = data.get("server", {})
    return server if isinstance(server, dict) else {}


def run_keys(ns: argparse.Namespace) -> int:
    config = Path(ns.config)
    path = keyfile.keys_path(config, str(_server_section(config).get("keys_file", "keys.toml")))
    try:
        data = keyfile.read_raw(path)
        out = _apply(ns, data)
        if ns.keys_command != "list":
            keyfile.write_raw(path, data)
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return 1
    _print(out, ns.json)
    return 0


def _apply(ns: argparse.Namespace, data: dict[str, Any]) -> object:
    cmd = ns.keys_command
    if cmd == "new":
        fields = {k: getattr(ns, k.replace("-", "_")) for k in keyfile.LIMIT_FLAGS}
        fields["team"] = ns.team
        fields["routes"] = [r for r in ns.routes.split(",") if r] if ns.routes else None
        fields["expires"] = ns.expires
        secret = keyfile.add_key(data, ns.name, fields)
        return {"name": ns.name, "key": secret}
    if cmd == "rotate":
        return {"name": ns.name, "key": keyfile.rotate_key(data, ns.name)}
    if cmd == "team":
        team = data.setdefault("teams", {}).setdefault(ns.name, {})
        team.update({k: v for k in keyfile.LIMIT_FLAGS if (v := getattr(ns, k)) is not None})
        return {"team": ns.name, **team}
    if cmd in ("disable", "enable"):
        keyfile.set_disabled(data, ns.name, cmd == "disable")
        return {"name": ns.name, "disabled": cmd == "disable"}
    if cmd == "rm":
        keyfile.remove_key(data, ns.name)
        return {"name": ns.name, "removed": True}
    return [
        {"name": name, **{k: v for k, v in entry.items() if k != "hash"}}
        for name, entry in sorted(data.get("keys", {}).items())
    ]


def _print(out: object, as_json: bool) -> None:
    if as_json:
        print(orjson.dumps(out, default=str).decode())
        return
    if isinstance(out, dict) and "key" in out:
        print(f"{out['name']}: {out['key']}")
        print("Store this key now: it is not kept and cannot be shown again.", file=sys.stderr)
        return
    rows = out if isinstance(out, list) else [out]
    for row in rows:
        if isinstance(row, dict):
            print("  ".join(f"{k}={v}" for k, v in row.items()))


def parse_since(text: str) -> float:
    """`30m`, `24h`, `7d` ago as epoch seconds; `all` for everything."""
    if text == "all":
        return 0.0
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if not text or text[-1] not in units or not text[:-1].isdigit():
        raise ValueError("--since must look like 30m, 24h, 7d or all")
    return time.time() - int(text[:-1]) * units[text[-1]]


def run_usage(ns: argparse.Namespace) -> int:
    config = Path(ns.config)
    paths = [Path(p) for p in ns.ledger]
    if not paths:
        ledger = _server_section(config).get("ledger")
        if not isinstance(ledger, str):
            print(f"{config}: no [server] ledger configured", file=sys.stderr)
            return 1
        paths = [Path(ledger) if Path(ledger).is_absolute() else config.parent / ledger]
    path = paths[0]
    try:
        since = parse_since(ns.since)
        reports = []
        for path in paths:
            reports.append(report(path, ns.by, since))
        rows = reports[0] if len(reports) == 1 else merged(reports, ns.by)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - sqlite3.Error and friends: a message, not a trace
        print(f"{path}: cannot read the ledger: {exc}", file=sys.stderr)
        return 1
    if ns.json:
        print(orjson.dumps(rows).decode())
        return 0
    head = f"{ns.by:<24} {'requests':>9} {'errors':>7} {'tokens in':>11} {'tokens out':>11} "
    print(head + f"{'cost USD':>12} {'TTFB ms':>9} {'took ms':>9}")
    for r in rows:
        print(
            f"{r[ns.by]!s:<24} {r['requests']:>9} {r['errors']:>7} {r['tokens_in']:>11} "
            f"{r['tokens_out']:>11} {r['cost_usd']:>12.6f} {r['ttfb_ms_avg']:>9} "
            f"{r['duration_ms_avg']:>9}"
        )
    total = sum(float(str(r["cost_usd"])) for r in rows)
    count = sum(int(str(r["requests"])) for r in rows)
    print(f"{'total':<24} {count:>9} {'':>7} {'':>11} {'':>11} {total:>12.6f}")
    return 0
