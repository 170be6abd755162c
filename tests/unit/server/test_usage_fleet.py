"""`gateway usage --ledger A --ledger B`: the ledgers of several instances added up."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from proxy.governance.ledger import Ledger, Row
from proxy.server.cli import main


def write(path: Path, rows: list[tuple[str, float]]) -> None:
    ledger = Ledger(path)
    ledger.start()
    now = time.time()
    for i, (key, usd) in enumerate(rows):
        ledger.add(
            Row(
                now,
                f"{path.stem}{i}",
                key,
                None,
                "chat",
                "up",
                "chat",
                10,
                5,
                0,
                usd,
                200,
                1.0,
                2.0,
                None,
                False,
            )
        )
    ledger.close()


def test_usage_adds_up_several_ledgers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "one.db", [("a", 1.0), ("b", 0.5)])
    write(tmp_path / "two.db", [("a", 2.0), ("a", 0.25), ("c", 3.0)])
    config = tmp_path / "gateway.toml"
    config.write_text("[server]\n")
    code = main(
        [
            "usage",
            "--json",
            "--config",
            str(config),
            "--ledger",
            str(tmp_path / "one.db"),
            "--ledger",
            str(tmp_path / "two.db"),
        ]
    )
    out, _ = capsys.readouterr()
    assert code == 0
    rows = {r["key"]: r for r in orjson.loads(out)}
    assert rows["a"]["requests"] == 3
    assert rows["a"]["cost_usd"] == pytest.approx(3.25)
    assert rows["a"]["tokens_in"] == 30
    assert rows["c"]["requests"] == 1
    assert [r["key"] for r in orjson.loads(out)] == ["a", "c", "b"]
