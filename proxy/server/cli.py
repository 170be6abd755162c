"""The `gateway` command line: serve, check, fake-upstream, demo, simulate."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path

from proxy import __version__
from proxy.config.compiler import compile_text
from proxy.config.values import Config, ConfigError
from proxy.governance import keyfile
from proxy.governance.prices import SnapshotPrices
from proxy.governance.pricetable import shipped
from proxy.ops import logs
from proxy.server import keyscli, statuscli


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    ns = parser.parse_args(argv)
    if ns.command == "check":
        return check(Path(ns.config))
    if ns.command == "serve":
        from proxy.server.process import serve

        logs.configure()
        return _run(serve(Path(ns.config)))
    if ns.command == "fake-upstream":
        from proxy.fake.server import behaviour_from_args
        from proxy.fake.server import serve as fake_serve

        def ready(port: int) -> None:
            print(f"fake upstream ({ns.dialect}) listening on http://{ns.host}:{port}", flush=True)

        coro = fake_serve(ns.host, ns.port, ns.dialect, ns.name, behaviour_from_args(ns), ready)
        return _run(_forever(coro))
    if ns.command in ("keys", "usage"):
        return keyscli.run_keys(ns) if ns.command == "keys" else keyscli.run_usage(ns)
    if ns.command == "status":
        return statuscli.run_status(ns)
    if ns.command == "demo":
        from proxy.server.demo import run_demo

        logs.configure()
        return _run(run_demo(Path(ns.config), ns.port, ns.fake_port))
    if ns.command == "simulate":
        from proxy.server.simulate import run_simulate

        return _run(run_simulate(ns.scenario, ns.speed, ns.json, tuple(ns.only or ())))
    parser.print_help()
    return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="Self-hosted LLM gateway.")
    parser.add_argument("--version", action="version", version=f"llm-gateway {__version__}")
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("serve", help="run the gateway")
    p.add_argument("--config", default="gateway.toml", help="path of gateway.toml")
    p = sub.add_parser("check", help="validate a config and print the compiled routing table")
    p.add_argument("--config", default="gateway.toml")
    p = sub.add_parser("fake-upstream", help="run the fake LLM provider used by tests and the demo")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9001)
    from proxy.fake.behaviour import DIALECTS
    from proxy.fake.server import add_arguments

    p.add_argument("--dialect", choices=DIALECTS, default="openai")

    add_arguments(p)
    p = sub.add_parser("demo", help="start fake providers and the gateway on the demo routing")
    p.add_argument("--config", default="gateway.toml")
    p.add_argument("--port", type=int, help="the gateway's port, in place of [server] listen's")
    p.add_argument(
        "--fake-port",
        type=int,
        help="first port of the fake providers (the next ones follow), in place of the file's",
    )
    p = sub.add_parser(
        "simulate", help="replay a load on a real gateway against fake providers in an incident"
    )
    p.add_argument("scenario", help="a scenario TOML file, or a shipped scenario's name")
    p.add_argument("--speed", type=float, default=1.0, help="divide every scenario duration by X")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--only", action="append", metavar="OPTION", help="run this option set only")
    keyscli.add_parsers(sub)
    statuscli.add_parser(sub)
    return parser


async def _forever(coro: Coroutine[object, object, None]) -> int:
    await coro
    return 0


def _run(coro: Coroutine[object, object, int]) -> int:
    try:
        import uvloop

        return uvloop.run(coro)
    except KeyboardInterrupt:
        return 130
    finally:
        # The loop's handlers are gone: a late SIGTERM (systemctl stop twice) must not turn a
        # clean exit into death by signal while the interpreter winds down.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def check(path: Path) -> int:
    """Print every error with its TOML path (exit 1), or the compiled routing table (exit 0)."""
    try:
        config = compile_text(path.read_text("utf-8"))
    except OSError as exc:
        print(f"{path}: cannot read: {exc.strerror}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        print(f"{path}: {len(exc.errors)} error(s)", file=sys.stderr)
        return 1
    print(describe(config))
    keys_path = keyfile.keys_path(path, config.server.keys_file)
    try:
        table = keyfile.load(keys_path)
    except ConfigError as exc:
        for line in exc.errors:
            print(f"{keys_path}: {line}", file=sys.stderr)
        return 1
    if table is None:
        print(f"warning: no keys file at {keys_path}: the gateway is open", file=sys.stderr)
    else:
        print(f"\nkeys: {len(table.by_hash)} keys, {len(table.teams)} teams ({keys_path})")
    prices = SnapshotPrices(config, shipped())
    lines = ["", "prices (USD per million tokens: input / output / cached input):"]
    for name, up in config.upstreams.items():
        p = prices.by_upstream[name]
        source = "price" if up.price is not None else "shipped table"
        if p is not None:
            cached = (
                p.input_per_mtok if p.cached_input_per_mtok is None else p.cached_input_per_mtok
            )
            lines.append(
                f"  {name}: {p.input_per_mtok:g} / {p.output_per_mtok:g} / {cached:g} ({source})"
            )
    print("\n".join(lines))
    for name in prices.unpriced:
        print(
            f"warning: upstreams.{name}: no price (its model is not in the shipped table); "
            "costed 0 until it sets price = { input_per_mtok = ..., output_per_mtok = ... }",
            file=sys.stderr,
        )
    return 0


def describe(config: Config) -> str:
    """The routing table as an operator reads it (credentials shown by reference only)."""
    s = config.server
    lines = [
        f"listen {s.host}:{s.port}  workers {s.workers}  max body {s.max_body_bytes} B  "
        f"drain {s.drain_timeout_s:g}s  panic {'on' if config.panic else 'off'}",
        "",
        "upstreams:",
    ]
    for up in config.upstreams.values():
        t = up.timeouts
        lines.append(
            f"  {up.name}: {up.provider} {up.base_url} model={up.model or '(client model)'} "
            f"credential={up.credential_ref or 'none'} connect={t.connect_s:g}s "
            f"ttfb={t.ttfb_s:g}s idle={t.idle_s:g}s"
        )
    lines += ["", "routes:"]
    for route in config.routes.values():
        fallback = f" fallback={','.join(route.fallback)}" if route.fallback else ""
        lines.append(
            f"  {route.name}: strategy={route.strategy.value} "
            f"max_attempts={route.max_attempts}{fallback}"
        )
        for i, tier in enumerate(route.tiers):
            members = ", ".join(f"{m.upstream.name}={m.weight}" for m in tier.members)
            origin = (
                "" if tier.origin == route.name else f" (from {tier.origin}, {tier.strategy.value})"
            )
            lines.append(f"    tier {i}: {members}{origin}")
    return "\n".join(lines)
