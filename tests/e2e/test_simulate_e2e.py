"""`gateway simulate smoke --json`: real gateway processes against fakes under a 503 outage."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import orjson
import pytest
from e2e.e2e_harness import GATEWAY_CMD, REPO, child_env

pytestmark = pytest.mark.e2e

BOUND_S = 120.0  # the smoke scenario takes about 20 s; a stuck run is stopped, then failed


async def _simulate(*args: str) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        *GATEWAY_CMD,
        "simulate",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=child_env(),
        cwd=REPO,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), BOUND_S)
    except TimeoutError:
        # SIGINT lets the simulator stop its own gateway and fakes; then by PID, for good.
        proc.send_signal(signal.SIGINT)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 15.0)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        pytest.fail(f"gateway simulate did not finish within {BOUND_S}s")
    assert proc.returncode is not None
    return proc.returncode, out, err


async def test_the_smoke_scenario_reports_baseline_and_incident_per_option_set() -> None:
    code, out, err = await _simulate("smoke", "--json")
    assert code == 0, err.decode()
    doc = orjson.loads(out)
    assert doc["scenario"].startswith("smoke")
    rows = {(r["option"], r["run"]): r for r in doc["results"]}
    assert set(rows) == {
        (o, run) for o in ("weighted", "latency") for run in ("baseline", "incident")
    }
    requests = doc["load"]["requests"]
    for (option, run), r in rows.items():
        assert r["requests"] == requests, (option, run)
        assert r["p50_ttfb_ms"] <= r["p99_ttfb_ms"], (option, run)
        assert r["cost_usd"] > 0, (option, run)  # priced from the shipped table (gpt-4o-mini)
        assert sum(r["by_upstream"].values()) == r["succeeded"]
        # one provider stays healthy and max_attempts is 3: failover hides the outage
        assert r["success"] == 1.0, (option, run, r)
        if run == "baseline":
            assert r["attempts_per_request"] == 1.0, (option, r)
    # smooth weighted round robin splits a fault-free load exactly
    assert rows["weighted", "baseline"]["by_upstream"] == {
        "alpha": requests // 2,
        "beta": requests - requests // 2,
    }
    # under the outage, weighted keeps sending alpha its share: some requests need two attempts
    incident = rows["weighted", "incident"]
    assert incident["attempts_per_request"] > 1.0
    assert incident["by_upstream"]["beta"] > incident["by_upstream"].get("alpha", 0)


async def test_a_scenario_that_does_not_exist_is_a_clear_error() -> None:
    code, out, err = await _simulate("no-such-scenario")
    assert code == 2
    assert out == b""
    assert b"no such file, nor a shipped scenario" in err
    assert b"smoke" in err
