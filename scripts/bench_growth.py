"""Growth section of scripts/bench: CPU per request and peak RSS as bodies and streams grow."""

from __future__ import annotations

import argparse
from pathlib import Path

import orjson
from benchproc import MESSAGES, Procs, Run, chat_body, med, note, wrk

BODIES = (("1 KB", 1 << 10), ("100 KB", 100 << 10), ("1 MB", 1 << 20), ("10 MB", 10 << 20))
STREAMS = (20, 200, 2000)
TWO = ("bare", "gateway")
CONNS = 4  # a 10 MB body at c=4 keeps 40 MB in flight: far below max_inflight_body_mb
# A run counts the CPU of the requests still in flight at its end (up to CONNS of them) but
# not those requests: the 10 MB row runs longer so that they stay a small share.
LONGER = {10 << 20: 3}
Growth = dict[str, dict[str, list[Run]]]  # load -> target -> one run per round


def body_file(tmp: Path, size: int) -> Path:
    """A chat request of exactly `size` bytes (one long user message), written once."""
    path = tmp / f"body-{size}.json"
    if not path.exists():
        empty = orjson.dumps({"model": "bench", "messages": [{"role": "user", "content": ""}]})
        text = "x" * max(size - len(empty), 0)
        path.write_bytes(
            orjson.dumps({"model": "bench", "messages": [{"role": "user", "content": text}]})
        )
    return path


def stream_body() -> bytes:
    return orjson.dumps({"model": "bench", "messages": MESSAGES, "stream": True})


def growth_round(procs: Procs, rnd: int, args: argparse.Namespace, runs: Growth) -> None:
    """One round: per fake (bodies; then one per chunk count) bare and gateway side by side."""
    d = args.phase_duration
    groups: list[tuple[int, list[tuple[str, Path | bytes, int]]]] = [
        (
            20,
            [
                (f"JSON body {label}", body_file(procs.tmp, n), d * LONGER.get(n, 1))
                for label, n in BODIES
            ],
        )
    ]
    groups += [(n, [(f"stream {n:,} chunks", stream_body(), d)]) for n in STREAMS]
    order = TWO if rnd % 2 == 0 else TWO[::-1]
    for chunks, loads in groups:
        fake = procs.fake(f"growth{chunks}", "--chunks", str(chunks))
        servers = {"bare": procs.bare(fake), "gateway": procs.gateway(fake, args.workers)}
        try:
            for s in servers.values():  # warm-up: pools, the latency strategy's EWMA
                wrk(s, chat_body("bare", False), CONNS, 1, "growth warm-up")
            for load, body, secs in loads:
                for name in order:
                    r = wrk(servers[name], body, CONNS, secs, "growth")
                    runs.setdefault(load, {}).setdefault(name, []).append(r)
                    note(
                        f"growth round {rnd + 1}: {load:22} {name:8} {r.requests:6,} req  "
                        f"cpu {r.cpu_us:9.1f} us/req  peak {r.peak_kb / 1024:7.1f} MiB"
                    )
        finally:
            procs.stop(fake.proc, *(s.proc for s in servers.values()))


def run_growth(procs: Procs, args: argparse.Namespace) -> Growth:
    runs: Growth = {}
    for rnd in range(args.phase_rounds):
        growth_round(procs, rnd, args, runs)
    return runs


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def figures(runs: Growth) -> dict[str, dict[str, float]]:
    """Medians per load and target, and the paired gateway/bare ratio per round."""
    out: dict[str, dict[str, float]] = {}
    for load, by in runs.items():
        pairs = zip(by["gateway"], by["bare"], strict=True)
        out[load] = {
            **{f"{n}_us": med([r.cpu_us for r in by[n]]) for n in TWO},
            **{f"{n}_peak_mib": med([r.peak_kb / 1024 for r in by[n]]) for n in TWO},
            **{f"{n}_requests": sum(r.requests for r in by[n]) for n in TWO},
            "ratio": med([g.cpu_us / b.cpu_us for g, b in pairs if b.cpu_us]),
            "errors": sum(r.errors for n in TWO for r in by[n]),
        }
    return out


def report_growth(runs: Growth, args: argparse.Namespace) -> dict[str, object]:
    """Print the growth table and the slopes; return their figures."""
    stats = figures(runs)
    print(
        f"\nGrowth (wrk c={CONNS}, {args.phase_rounds} round(s) of {args.phase_duration} s, "
        f"10 MB: {args.phase_duration * LONGER[10 << 20]} s; "
        "CPU per request, us; peak RSS of the target during the run, MiB; ratio = gateway/bare)"
    )
    print(f"  {'load':24}{'bare us':>10}{'gateway us':>12}{'ratio':>7}"
          f"{'bare MiB':>10}{'gateway MiB':>13}{'requests b/g':>16}{'errors':>8}")  # fmt: skip
    for load, f in stats.items():
        reqs = f"{f['bare_requests']:,.0f}/{f['gateway_requests']:,.0f}"
        print(
            f"  {load:24}{f['bare_us']:>10,.0f}{f['gateway_us']:>12,.0f}{f['ratio']:>7.2f}"
            f"{f['bare_peak_mib']:>10.1f}{f['gateway_peak_mib']:>13.1f}{reqs:>16}"
            f"{f['errors']:>8.0f}"
        )
    kinds = (
        ("us per extra MiB of body", [n / 2**20 for _, n in BODIES], [x for x, _ in BODIES],
         [f"JSON body {label}" for label, _ in BODIES]),
        ("us per extra chunk", [float(n) for n in STREAMS], [f"{n:,}" for n in STREAMS],
         [f"stream {n:,} chunks" for n in STREAMS]),
    )  # fmt: skip
    slopes: dict[str, dict[str, float]] = {}
    print(f"  {'slope':36}{'bare':>10}{'gateway':>10}{'ratio':>7}  (linear: segments alike)")
    for unit, xs, names, loads in kinds:
        print(f"  {unit}")
        rows = [("least squares over the rows", 0, len(xs) - 1)]
        rows += [(f"{names[k]} -> {names[k + 1]}", k, k + 1) for k in range(len(xs) - 1)]
        for label, a, b in rows:
            if label.startswith("least"):
                fit = {n: slope(xs, [stats[x][f"{n}_us"] for x in loads]) for n in TWO}
            else:
                ys = {n: [stats[loads[k]][f"{n}_us"] for k in (a, b)] for n in TWO}
                fit = {n: (ys[n][1] - ys[n][0]) / (xs[b] - xs[a]) for n in TWO}
            ratio = fit["gateway"] / fit["bare"] if fit["bare"] else float("nan")
            slopes[f"{unit}: {label}"] = {**fit, "ratio": ratio}
            print(f"    {label:34}{fit['bare']:>10,.2f}{fit['gateway']:>10,.2f}{ratio:>7.2f}")
    return {"loads": stats, "slopes": slopes}
