"""Governance through real processes: keys made by the CLI, both SDKs, SIGTERM and the ledger."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
from pathlib import Path

import aiohttp
import anthropic
import openai
import orjson
import pytest
from e2e.e2e_harness import (
    GATEWAY_CMD,
    FakeStarter,
    GatewayStarter,
    chat_body,
    child_env,
    config_dict,
    upstream_entry,
    wait_until,
    write_config,
)

from proxy.fake.behaviour import Behaviour

pytestmark = pytest.mark.e2e
pytest_plugins = ("e2e.e2e_fixtures",)

DEAR = {"input_per_mtok": 0.0, "output_per_mtok": 1_000_000.0}
"""1 USD per output token: a stream reserves 1 USD (max_tokens = 1) and costs one per chunk."""


def cli(config: Path, *args: str) -> str:
    done = subprocess.run(
        [*GATEWAY_CMD, *args, "--config", str(config)],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=30,
        check=True,
    )
    return done.stdout


def new_key(config: Path, name: str, *flags: str) -> str:
    out = orjson.loads(cli(config, "keys", "new", name, "--json", *flags))
    assert out["name"] == name
    assert out["key"] not in (config.parent / "keys.toml").read_text()
    return str(out["key"])


async def test_both_sdks_see_openai_shaped_401_and_403(
    tmp_path: Path, fake_upstreams: FakeStarter, spawn_gateway: GatewayStarter
) -> None:
    fake = await fake_upstreams("a")
    path = tmp_path / "gateway.toml"
    write_config(
        path,
        config_dict(
            {"a": upstream_entry(fake, "m")},
            {"chat": {"tiers": [{"a": 1}]}, "secret-route": {"tiers": [{"a": 1}]}},
            watch=True,
        ),
    )
    key = new_key(path, "app", "--routes", "chat")
    gw = spawn_gateway(path)
    await gw.wait_ready()
    base = f"{gw.address}/v1"
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [
        {"role": "user", "content": "hi"}
    ]
    async with openai.AsyncOpenAI(base_url=base, api_key="sk-gw-wrong", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError) as info:
            await bad.chat.completions.create(model="chat", messages=messages)
    assert info.value.status_code == 401
    assert info.value.code == "invalid_api_key"
    async with openai.AsyncOpenAI(base_url=base, api_key=key, max_retries=0) as good:
        done = await good.chat.completions.create(model="chat", messages=messages)
        assert done.choices[0].message.content
        with pytest.raises(openai.PermissionDeniedError) as denied:
            await good.chat.completions.create(model="secret-route", messages=messages)
    assert denied.value.code == "model_not_allowed"
    body = orjson.loads(chat_body("chat", stream=False))
    for api_key, expected in (("sk-gw-wrong", 401), (key, 200)):
        async with anthropic.AsyncAnthropic(
            base_url=gw.address, api_key=api_key, max_retries=0
        ) as client:
            if expected == 401:
                with pytest.raises(anthropic.AuthenticationError) as auth:
                    await client.post("/v1/chat/completions", body=body, cast_to=object)
                assert auth.value.status_code == 401
                assert auth.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
            else:
                r = await client.post("/v1/chat/completions", body=body, cast_to=object)
                assert isinstance(r, dict)
                assert r["choices"]
    assert len(fake.requests) == 2
    # `gateway keys disable` on the file: the running gateway refuses the key within a second.
    cli(path, "keys", "disable", "app")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 1.0
    status = 200
    async with aiohttp.ClientSession() as s:
        while status == 200 and loop.time() < deadline:
            async with s.post(
                f"{base}/chat/completions",
                data=chat_body("chat", stream=False),
                headers={"Authorization": f"Bearer {key}"},
            ) as r:
                status = r.status
            await asyncio.sleep(0.05)
    assert status == 401
    out = gw.output()
    assert key not in out
    assert '"key":"app"' in out


async def stream(url: str, key: str, body: bytes) -> int:
    async with (
        aiohttp.ClientSession() as s,
        s.post(url, data=body, headers={"Authorization": f"Bearer {key}"}) as r,
    ):
        await r.read()
        return r.status


async def test_sigterm_settles_every_stream_in_the_ledger_and_restart_keeps_spending(
    tmp_path: Path, fake_upstreams: FakeStarter, spawn_gateway: GatewayStarter
) -> None:
    fake = await fake_upstreams("a", Behaviour(chunks=40, chunk_delay_s=0.1))
    path = tmp_path / "gateway.toml"
    write_config(
        path,
        config_dict(
            {"a": upstream_entry(fake, "m", price=DEAR)},
            {"chat": {"tiers": [{"a": 1}]}},
            ledger="usage.db",
            drain_timeout_s=1,
        ),
    )
    key = new_key(path, "app", "--usd-total", "7")
    gw = spawn_gateway(path)
    await gw.wait_ready()
    url = f"{gw.address}/v1/chat/completions"
    body = chat_body("chat", stream=True, max_tokens=1)
    tasks = [asyncio.create_task(stream(url, key, body)) for _ in range(5)]
    await wait_until("five streams upstream", lambda: len(fake.requests) == 5)
    await asyncio.sleep(0.3)
    gw.signal(signal.SIGTERM)
    assert await gw.wait_exit(15) == 0
    assert [await t for t in tasks] == [200] * 5
    conn = sqlite3.connect(tmp_path / "usage.db")
    rows = conn.execute(
        "SELECT key, status, tokens_out, cost_usd, estimated FROM requests"
    ).fetchall()
    conn.close()
    assert len(rows) == 5
    # Cut by the drain before the usage chunk: tokens counted by the gateway, and flagged.
    assert all(
        k == "app" and status == 200 and out > 0 and usd > 0 and est == 1
        for k, status, out, usd, est in rows
    )
    report = orjson.loads(cli(path, "usage", "--by", "key", "--json"))
    assert report[0]["key"] == "app"
    assert report[0]["requests"] == 5
    again = spawn_gateway(path)
    await again.wait_ready()
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{again.address}/v1/chat/completions",
            data=chat_body("chat", stream=False, max_tokens=1),
            headers={"Authorization": f"Bearer {key}"},
        ) as r,
    ):
        assert r.status == 429
        assert r.headers["x-should-retry"] == "false"
        assert (await r.json())["error"]["code"] == "budget_exceeded"


@pytest.mark.parametrize("workers", [1, 2])
async def test_require_keys_without_a_keys_file_exits_1(
    tmp_path: Path, fake_upstreams: FakeStarter, spawn_gateway: GatewayStarter, workers: int
) -> None:
    fake = await fake_upstreams("a")
    path = tmp_path / "gateway.toml"
    write_config(
        path,
        config_dict(
            {"a": upstream_entry(fake, "m")},
            {"chat": {"tiers": [{"a": 1}]}},
            require_keys=True,
            workers=workers,
        ),
    )
    gw = spawn_gateway(path)
    assert await gw.wait_exit(20) == 1
    assert "server.require_keys" in gw.output()


def test_check_shows_prices_and_keys_and_refuses_a_broken_keys_file(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(
        '[server]\nlisten = "127.0.0.1:0"\n'
        '[upstreams.mini]\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "gpt-4o-mini"\n'
        '[upstreams.own]\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "x"\n'
        "price = { input_per_mtok = 1.5, output_per_mtok = 2 }\n"
        '[upstreams.nothing]\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "no-such-model"\n'
        '[routes.chat]\nstrategy = "cost"\ntiers = [{ mini = 1, own = 1, nothing = 1 }]\n'
    )

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*GATEWAY_CMD, "check", "--config", str(path)],
            capture_output=True,
            text=True,
            env=child_env(),
            timeout=30,
            check=False,
        )

    done = check()
    assert done.returncode == 0, done.stderr
    assert "mini: 0.15 / 0.6 / 0.075 (shipped table)" in done.stdout
    assert "own: 1.5 / 2 / 1.5 (price)" in done.stdout
    assert "upstreams.nothing: no price" in done.stderr
    assert "the gateway is open" in done.stderr
    new_key(path, "app")
    done = check()
    assert done.returncode == 0
    assert "keys: 1 keys, 0 teams" in done.stdout
    (tmp_path / "keys.toml").write_text((tmp_path / "keys.toml").read_text() + "rpm = -1\n")
    done = check()
    assert done.returncode == 1
    assert "keys.app.rpm" in done.stderr
