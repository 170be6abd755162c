"""The command line of scripts/bench: load rounds, phases and their sizes."""

from __future__ import annotations

import argparse
from pathlib import Path

PHASES = ("growth", "stream_memory", "wait", "workers_compare")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark the gateway (see scripts/bench.py). Without a phase flag: the "
        "load rounds, TTFB and open-stream memory, then the growth section (~8 minutes). "
        "Phase flags (combinable) run only the phases named; --all runs everything.",
    )
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 round of 2 s runs, no growth section (~1 minute); with phase flags: "
        "1 round of 2 s per phase",
    )
    g = p.add_argument_group("phases")
    phases = {
        "--growth": "CPU/request and peak RSS for bodies of 1 KB-10 MB and streams of 20-2,000 "
        "chunks, bare beside, and the slopes",
        "--stream-memory": "RSS per in-flight stream: long streams held open, sampled early "
        "and late (does it grow with their length?)",
        "--wait": "req/s, CPU/request and busy at c=64 and c=256, and the gateway with its "
        "stdout on a slowly read pipe",
        "--workers-compare": "workers = 1 beside 2: req/s and CPU per worker process (c=64)",
    }
    for flag, text in phases.items():
        g.add_argument(flag, action="store_true", help=text)
    g.add_argument("--all", action="store_true", help="the full run and every phase (~10 min)")
    g.add_argument("--phase-rounds", type=int, default=2, help="rounds of each phase (default 2)")
    g.add_argument("--phase-duration", type=int, default=2, help="s per phase wrk run (default 2)")
    g.add_argument("--hold-streams", type=int, default=200, help="--stream-memory streams")
    g.add_argument("--hold-chunks", type=int, default=2000, help="chunks of each held stream")
    g.add_argument("--hold-delay", type=float, default=0.01, help="s between their chunks")
    g.add_argument("--hold-deadline", type=float, default=60, help="s before sampling anyway")
    p.add_argument("--workers", type=int, default=1, help="[server] workers of the gateway")
    p.add_argument("--streams", type=int, default=1000, help="open streams for the memory figure")
    p.add_argument("--soak", type=int, default=0, help="seconds of mixed load (max 900; 0: skip)")
    p.add_argument("--json", type=Path, help="also write the figures as JSON to this file")
    p.add_argument(
        "--key",
        action="store_true",
        help="load runs with a virtual key (limits and budgets) on every gateway request "
        "(the load rounds; the phases run without)",
    )
    args = p.parse_args()
    named = [ph for ph in PHASES if getattr(args, ph)]
    args.core = not named or args.all
    args.phases = set(PHASES if args.all else named or ([] if args.quick else ["growth"]))
    if args.quick:
        args.rounds, args.duration, args.phase_rounds, args.phase_duration = 1, 2, 1, 2
    args.soak = max(0, min(args.soak, 900))
    return args
