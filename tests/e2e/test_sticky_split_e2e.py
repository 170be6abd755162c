"""Sticky routing and an A/B split through a real gateway process with the OpenAI SDK, and
`gateway usage --by arm` reading the ledger it wrote."""

from __future__ import annotations

import subprocess
from pathlib import Path

import openai
import orjson
import pytest
from e2e.e2e_harness import (
    GATEWAY_CMD,
    FakeStarter,
    GatewayStarter,
    child_env,
    config_dict,
    upstream_entry,
    write_config,
)

pytestmark = pytest.mark.e2e
pytest_plugins = ("e2e.e2e_fixtures",)


def usage_by_arm(config: Path) -> str:
    done = subprocess.run(
        [*GATEWAY_CMD, "usage", "--by", "arm", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=30,
        check=True,
    )
    return done.stdout


async def test_sdk_sessions_stick_and_users_stay_in_their_arm(
    tmp_path: Path, fake_upstreams: FakeStarter, spawn_gateway: GatewayStarter
) -> None:
    fakes = {n: await fake_upstreams(n) for n in ("a1", "a2", "a3", "b")}
    path = tmp_path / "gateway.toml"
    routes = {
        "chat": {"split": {"chat-a": 50, "chat-b": 50}, "split_key": "user"},
        "chat-a": {
            "strategy": "sticky",
            "sticky_key": "header:x-session-id",
            "tiers": [{"a1": 1, "a2": 1, "a3": 1}],
        },
        "chat-b": {"tiers": [{"b": 1}]},
    }
    ups = {n: upstream_entry(f, f"{n}-model") for n, f in fakes.items()}
    write_config(path, config_dict(ups, routes, ledger="usage.db"))
    gw = spawn_gateway(path)
    address = await gw.wait_ready()
    client = openai.AsyncOpenAI(base_url=address + "/v1", api_key="k", max_retries=0, timeout=10)
    arm_of: dict[str, str] = {}
    upstream_of: dict[str, set[str]] = {}
    try:
        for i in range(30):
            user, session = f"user-{i % 6}", f"s-{i % 5}"
            raw = await client.chat.completions.with_raw_response.create(
                model="chat",
                messages=[{"role": "user", "content": "hi"}],
                user=user,
                extra_headers={"x-session-id": session},
            )
            arm = raw.headers["x-gateway-arm"]
            assert arm_of.setdefault(user, arm) == arm
            if arm == "chat-a":
                upstream_of.setdefault(session, set()).add(raw.headers["x-gateway-upstream"])
            else:
                assert raw.headers["x-gateway-upstream"] == "b"
    finally:
        await client.close()
    assert set(arm_of.values()) == {"chat-a", "chat-b"}
    assert upstream_of and all(len(v) == 1 for v in upstream_of.values())
    access = gw.events("access")
    assert {e["arm"] for e in access} == {"chat-a", "chat-b"}
    gw.stop()  # SIGTERM: the ledger is flushed
    by_arm = {r["arm"]: r["requests"] for r in orjson.loads(usage_by_arm(path))}
    assert sum(by_arm.values()) == 30
    assert by_arm == {
        a: sum(1 for i in range(30) if arm_of[f"user-{i % 6}"] == a) for a in ("chat-a", "chat-b")
    }
