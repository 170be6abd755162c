"""`gateway simulate`: a real gateway process against fake providers under a scripted incident."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import orjson
import tomli_w

from proxy.fake.scenario import Scenario, ScenarioError, parse
from proxy.fake.server import FakeProvider
from proxy.server.simload import replay
from proxy.server.simreport import RunResult, summarize, table
from proxy.server.tasks import Tasks

ROUTE = "sim"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


def shipped() -> list[str]:
    """Names of the scenarios shipped in the package."""
    root = resources.files("proxy.fake") / "scenarios"
    return sorted(p.name.removesuffix(".toml") for p in root.iterdir() if p.name.endswith(".toml"))


def load_scenario(name_or_path: str) -> Scenario:
    """A scenario file by path, else a shipped scenario by name; ScenarioError if neither."""
    path = Path(name_or_path)
    if path.is_file():
        return parse(path.read_text("utf-8"), str(path))
    item = resources.files("proxy.fake") / "scenarios" / f"{name_or_path}.toml"
    if item.is_file():
        return parse(item.read_text("utf-8"), f"{name_or_path}.toml")
    raise ScenarioError(
        f"{name_or_path}: no such file, nor a shipped scenario ({', '.join(shipped())})"
    )


def gateway_config(
    scenario: Scenario, option: dict[str, object], urls: dict[str, str], scale: float
) -> dict[str, object]:
    """The gateway.toml of one run: a route `sim` over the fakes, with the option set applied."""
    option = dict(option)
    overrides = option.pop("upstreams", {})
    if not isinstance(overrides, dict):
        raise ScenarioError("options.*.upstreams must be a table of upstream tables")
    upstreams: dict[str, object] = {}
    for p in scenario.providers:
        up: dict[str, object] = {"provider": "openai", "base_url": urls[p.name], "model": p.model}
        extra = overrides.get(p.name, {})
        if isinstance(extra, dict):
            up.update(extra)
        upstreams[p.name] = up
    route: dict[str, object] = {"tiers": [{p.name: p.weight for p in scenario.providers}]}
    route.update(option)
    gateway = {k: v for k, v in scenario.gateway.items() if k not in ("server", "defaults")}
    defaults = dict(_table(scenario.gateway, "defaults"))
    # Ejections last seconds; on a shrunk clock they shrink too, or they would outlast the phases.
    ejection = {"base_s": 10.0 * scale, "max_s": 300.0 * scale, **_table(defaults, "ejection")}
    defaults["ejection"] = ejection
    server = {"listen": "127.0.0.1:0", "watch": False, "access_log": True, "log_level": "info"}
    server.update(_table(scenario.gateway, "server"))
    return {
        **gateway,
        "server": server,
        "defaults": defaults,
        "upstreams": upstreams,
        "routes": {ROUTE: route},
    }


def _table(data: dict[str, object], key: str) -> dict[str, object]:
    value = data.get(key, {})
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else {}


async def run_once(
    scenario: Scenario, name: str, option: dict[str, object], scale: float, incident: bool
) -> RunResult:
    """One option set, fresh fakes and a fresh gateway; `incident` plays the phases."""
    fakes = {
        p.name: FakeProvider(name=p.name, default=p.behaviour(), seed=scenario.seed + i)
        for i, p in enumerate(scenario.providers)
    }
    plays = Tasks()
    played: list[asyncio.Task[None]] = []
    with tempfile.TemporaryDirectory(prefix="gateway-sim-") as tmp:
        try:
            for fake in fakes.values():
                await fake.start()
            config = gateway_config(
                scenario, option, {n: f.base_url for n, f in fakes.items()}, scale
            )
            path = Path(tmp) / "gateway.toml"
            await asyncio.to_thread(path.write_bytes, tomli_w.dumps(config).encode())
            log = Path(tmp) / "gateway.log"
            proc, address = await _spawn(path, log)
            try:
                if incident:
                    for p in scenario.providers:
                        timeline = p.timeline(scale)
                        task = plays.spawn(fakes[p.name].play(timeline), name=f"sim-{p.name}")
                        played.append(task)
                outcomes = await replay(address, ROUTE, scenario.load, scenario.seed, scale)
            finally:
                await _stop(proc)
            for task in played:  # a timeline that could not be played makes the run void
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise RuntimeError(f"{task.get_name()}: {task.exception()!r}")
            lines = await asyncio.to_thread(_log_lines, log)
            access = [obj for obj in lines if obj.get("event") == "access"]
        finally:
            await plays.cancel_all(STOP_TIMEOUT_S)
            await asyncio.gather(*(f.stop() for f in fakes.values()))
    return summarize(name, "incident" if incident else "baseline", outcomes, access)


async def _spawn(config: Path, log: Path) -> tuple[asyncio.subprocess.Process, str]:
    """Start `gateway serve` with its output in `log`; return it once its `ready` line is out."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.pop("NOTIFY_SOCKET", None)
    out = await asyncio.to_thread(log.open, "wb")
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "proxy",
            "serve",
            "--config",
            str(config),
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
            env=env,
        )
    finally:
        out.close()
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline and proc.returncode is None:
        for obj in await asyncio.to_thread(_log_lines, log):
            if obj.get("event") == "ready" and isinstance(obj.get("address"), str):
                return proc, str(obj["address"])
        await asyncio.sleep(0.05)
    await _stop(proc)
    tail = (await asyncio.to_thread(log.read_bytes))[-2000:].decode("utf-8", "replace")
    raise RuntimeError(f"the gateway did not become ready (pid {proc.pid}):\n{tail}")


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM this process (by its PID), SIGKILL it if it does not exit in time."""
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def _log_lines(log: Path) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for raw in log.read_bytes().splitlines():
        with contextlib.suppress(orjson.JSONDecodeError):
            obj = orjson.loads(raw)
            if isinstance(obj, dict):
                out.append(obj)
    return out


async def simulate(
    scenario: Scenario,
    speed: float = 1.0,
    only: tuple[str, ...] = (),
    progress: Callable[[str], None] = lambda _line: None,
) -> list[RunResult]:
    """Every option set (or those in `only`): the no-incident baseline, then the incident."""
    scale = scenario.time_scale / speed
    results: list[RunResult] = []
    for name, option in scenario.options:
        if only and name not in only:
            continue
        for incident in (False, True):
            progress(f"{name}: {'incident' if incident else 'baseline'} ...")
            results.append(await run_once(scenario, name, option, scale, incident))
    return results


async def run_simulate(target: str, speed: float, as_json: bool, only: tuple[str, ...]) -> int:
    """The command: print the table (or JSON); 2 on a bad scenario or option name."""
    try:
        scenario = load_scenario(target)
    except ScenarioError as exc:
        sys.stderr.write(f"gateway simulate: {exc}\n")
        return 2
    unknown = sorted(set(only) - {n for n, _ in scenario.options})
    if unknown:
        sys.stderr.write(f"gateway simulate: no option set {unknown[0]!r} in {target}\n")
        return 2
    if not speed > 0:
        sys.stderr.write("gateway simulate: --speed must be > 0\n")
        return 2

    # A hedge's loser is cancelled while the fake may be writing its headers; aiohttp logs
    # that client departure as a handler error with a traceback, which is noise here.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)

    def say(line: str) -> None:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    results = await simulate(scenario, speed, only, say)
    if as_json:
        doc = {
            "scenario": scenario.name,
            "time_scale": scenario.time_scale / speed,
            "load": {
                "requests": scenario.load.requests,
                "concurrency": scenario.load.concurrency,
            },
            "results": [r.to_json() for r in results],
        }
        sys.stdout.buffer.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        head = f"scenario: {scenario.name} (time scale {scenario.time_scale / speed:g})\n"
        if scenario.description:
            head += scenario.description.strip() + "\n"
        sys.stdout.write(head + "\n" + table(results))
    return 0
