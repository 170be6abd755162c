"""Workers phase of scripts/bench: one worker beside two, throughput and CPU per worker process."""

from __future__ import annotations

import argparse

from benchproc import CHUNKS, CPUS, PIN, TICK_US, Procs, Run, chat_body, med, note, wrk

CONNS = 64
COUNTS = (1, 2)


def server_cpus() -> list[int]:
    """The CPUs the gateway may use here: all but the client's (CPU 1) when pinning."""
    return sorted(CPUS - {1}) if PIN else sorted(CPUS)


def why_not(cpus: int) -> list[str]:
    """Whether this machine can show the 1.7x of workers = 2, and why not (lines)."""
    if cpus >= 3:
        return [f"{cpus} CPUs: the workers (and the fake upstream) on CPUs "
                f"{','.join(map(str, server_cpus()))}, wrk on CPU 1"]  # fmt: skip
    return [
        f"1.7x for workers = 2 cannot be shown with {cpus} CPU(s) (os.sched_getaffinity at the "
        "bench's start): it needs one CPU per worker and one for wrk, 3 at least (more with",
        f"the fake upstream beside them); here both workers share {max(cpus - 1, 1)} CPU with "
        "the fake upstream, so the figures to read are the CPU per worker and per request.",
    ]


def run_workers(procs: Procs, args: argparse.Namespace) -> dict[int, list[Run]]:
    """Interleaved rounds: the gateway with 1 and with 2 workers, JSON c=64."""
    pin = ["taskset", "-c", ",".join(map(str, server_cpus()))] if PIN else []
    runs: dict[int, list[Run]] = {n: [] for n in COUNTS}
    for rnd in range(args.phase_rounds):
        fake = procs.fake("workers", "--chunks", str(CHUNKS))
        gws = {n: procs.gateway(fake, n, pin=pin) for n in COUNTS}
        try:
            for gw in gws.values():
                wrk(gw, chat_body("gateway", False), 16, 1, "workers warm-up")
            for n in COUNTS if rnd % 2 == 0 else COUNTS[::-1]:
                body = chat_body("gateway", False)
                r = wrk(gws[n], body, CONNS, args.phase_duration, "workers", upstream=fake)
                runs[n].append(r)
                note(f"workers round {rnd + 1}: workers={n} {r.rps:8,.0f}/s  "
                     f"cpu {r.cpu_us:7.1f} us/req")  # fmt: skip
        finally:
            procs.stop(fake.proc, *(g.proc for g in gws.values()))
    return runs


def per_worker(r: Run) -> list[float]:
    """CPU of each worker process as a share of one CPU (the root itself when it has none)."""
    ticks = sorted(r.child_ticks.values(), reverse=True)
    if not ticks:
        return [r.cpu_us * r.requests / 1e6 / r.secs]
    return [t * TICK_US / 1e6 / r.secs for t in ticks]


def report_workers(runs: dict[int, list[Run]], args: argparse.Namespace) -> dict[str, object]:
    cpus = len(CPUS)
    print(
        f"\nWorkers (JSON c={CONNS}, wrk -t1, {args.phase_rounds} round(s) of "
        f"{args.phase_duration} s; CPU of each worker process as a share of one CPU; "
        "us/req: CPU of the supervisor and all workers / requests; fake: the fake upstream's "
        "share of a CPU)"
    )
    print(f"  {'workers':>7}{'req/s':>9}{'to 1':>7}{'us/req':>8}  {'per worker':18}"
          f"{'supervisor':>10}{'fake':>6}{'CPU 0 idle':>11}")  # fmt: skip
    one = runs[1]
    out: dict[str, object] = {"cpus": cpus}
    for n, rs in runs.items():
        shares = [per_worker(r) for r in rs]
        worker = [med([s[i] for s in shares if len(s) > i]) for i in range(max(map(len, shares)))]
        sup = med(
            [
                max(r.cpu_us * r.requests / 1e6 / r.secs - sum(s), 0.0) if r.child_ticks else 0.0
                for r, s in zip(rs, shares, strict=True)
            ]
        )
        row = {
            "rps": med([r.rps for r in rs]),
            "to_one": med([r.rps / o.rps for r, o in zip(rs, one, strict=True)]),
            "cpu_us": med([r.cpu_us for r in rs]),
            "worker_cpu_share": worker,
            "supervisor_cpu_share": sup,
            "fake_cpu_share": med([r.upstream_cpu_s / r.secs for r in rs]),
            "cpu0_idle": med([r.cpu0_idle_s / r.secs for r in rs]),
        }
        out[str(n)] = row
        sup_text = f"{sup:.2f}" if any(r.child_ticks for r in rs) else "-"
        print(f"  {n:>7}{row['rps']:>9,.0f}{row['to_one']:>7.2f}{row['cpu_us']:>8.0f}  "
              f"{', '.join(f'{w:.2f}' for w in worker):18}{sup_text:>10}"
              f"{row['fake_cpu_share']:>6.2f}{row['cpu0_idle']:>11.2f}")  # fmt: skip
    print("\n".join(f"  {line}" for line in why_not(cpus)))
    return out
