"""`gateway keys` and `gateway usage` on files: JSON for scripts, no secret stored or listed."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from proxy.server.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_keys_lifecycle_on_the_file_the_config_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[server]\nkeys_file = "secrets/keys.toml"\n')
    cfg = ("--config", str(config))
    code, out, _ = run(
        capsys,
        "keys",
        "new",
        "app",
        "--team",
        "t",
        "--rpm",
        "5",
        "--usd-per-day",
        "2.5",
        "--routes",
        "a,b",
        "--json",
        *cfg,
    )
    assert code == 0
    made = orjson.loads(out)
    assert made["name"] == "app" and made["key"].startswith("sk-gw-")
    text = (tmp_path / "secrets" / "keys.toml").read_text()
    assert made["key"] not in text
    assert "[teams.t]" in text
    code, out, _ = run(capsys, "keys", "list", "--json", *cfg)
    (listed,) = orjson.loads(out)
    assert listed["rpm"] == 5 and listed["routes"] == ["a", "b"] and "hash" not in listed
    code, out, _ = run(capsys, "keys", "rotate", "app", "--json", *cfg)
    assert orjson.loads(out)["key"] != made["key"]
    assert run(capsys, "keys", "disable", "app", *cfg)[0] == 0
    assert "disabled = true" in (tmp_path / "secrets" / "keys.toml").read_text()
    assert run(capsys, "keys", "enable", "app", *cfg)[0] == 0
    code, _, err = run(capsys, "keys", "new", "app", *cfg)
    assert code == 1 and "already exists" in err
    assert run(capsys, "keys", "rm", "app", *cfg)[0] == 0
    code, _, err = run(capsys, "keys", "rm", "app", *cfg)
    assert code == 1 and "no such key" in err


def test_usage_needs_a_ledger(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text("[server]\n")
    code, _, err = run(capsys, "usage", "--config", str(config))
    assert code == 1 and "no [server] ledger" in err
    config.write_text('[server]\nledger = "u.db"\n')
    code, _, err = run(capsys, "usage", "--since", "yesterday", "--config", str(config))
    assert code == 2 and "--since" in err
