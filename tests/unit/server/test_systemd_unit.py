"""Tests for systemd/llm-gateway.service: key settings, plus `systemd-analyze verify` if present."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[3] / "systemd" / "llm-gateway.service"
GATEWAY = "/opt/llm-gateway/venv/bin/gateway"
DEFAULT_DRAIN_S = 60


def load() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    # Keys are case-sensitive in systemd.
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def seconds(value: str) -> float:
    m = re.fullmatch(r"([0-9]+)(s|min)?", value.strip())
    assert m is not None, f"unexpected time span {value!r}"
    return int(m.group(1)) * (60 if m.group(2) == "min" else 1)


def test_sections_present() -> None:
    unit = load()
    assert {"Unit", "Service", "Install"} <= set(unit.sections())
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_notify_and_lifecycle() -> None:
    svc = load()["Service"]
    assert svc["Type"] == "notify"
    assert svc["NotifyAccess"] == "main"
    assert svc["ExecStartPre"].split()[:2] == [GATEWAY, "check"]
    assert svc["ExecStart"].split()[:2] == [GATEWAY, "serve"]
    assert "--config /etc/llm-gateway/gateway.toml" in svc["ExecStart"]
    assert "--config /etc/llm-gateway/gateway.toml" in svc["ExecStartPre"]
    assert svc["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert svc["KillMode"] == "mixed"
    assert svc["KillSignal"] == "SIGTERM"
    assert seconds(svc["TimeoutStopSec"]) > DEFAULT_DRAIN_S
    assert svc["Restart"] == "on-failure"
    assert seconds(svc["RestartSec"]) > 0
    assert int(svc["LimitNOFILE"]) >= 65536


def test_credentials_and_identity() -> None:
    svc = load()["Service"]
    assert svc["EnvironmentFile"] == "-/etc/llm-gateway/credentials.env"
    assert svc["User"] == "llm-gateway"
    assert svc["Group"] == "llm-gateway"
    assert svc["StateDirectory"] == "llm-gateway"
    assert svc["ReadOnlyPaths"] == "/etc/llm-gateway"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictNamespaces", "yes"),
        ("LockPersonality", "yes"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
    ],
)
def test_hardening(key: str, value: str) -> None:
    assert load()["Service"][key] == value


def test_address_families() -> None:
    families = set(load()["Service"]["RestrictAddressFamilies"].split())
    assert families == {"AF_INET", "AF_INET6", "AF_UNIX"}


def test_memory_deny_write_execute_left_out() -> None:
    # Some Python extensions need W+X memory; see the comment in the unit.
    assert "MemoryDenyWriteExecute" not in load()["Service"]


def test_comments_only_on_their_own_lines() -> None:
    # systemd keeps a trailing "# ..." as part of the value.
    for n, line in enumerate(UNIT.read_text().splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith(("#", ";")) or not stripped:
            continue
        assert "#" not in line, f"line {n}: inline comment: {line!r}"


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not on PATH (the configparser checks above still ran)")
    # verify insists that ExecStart binaries exist; point them at a stub.
    stub = tmp_path / "gateway"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace(GATEWAY, str(stub)))
    proc = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=30, check=False
    )
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, report
    # Unknown keys and bad values are only warnings (exit 0); catch them too.
    problems = [line for line in report.splitlines() if UNIT.name in line]
    assert problems == [], report


README = UNIT.parents[1] / "README.md"


def test_comments_describe_only_what_exists() -> None:
    comments = "\n".join(
        line for line in UNIT.read_text().splitlines() if line.lstrip().startswith("#")
    ).lower()
    for missing in ("ledger", "key hash", "spend", "sqlite", "extend_timeout"):
        assert missing not in comments, missing


def test_documentation_points_at_what_the_install_steps_create() -> None:
    doc = load()["Unit"]["Documentation"]
    assert doc.startswith("file://")
    installed = doc.removeprefix("file://")
    assert f"README.md {installed}" in README.read_text()


def test_readme_and_unit_agree_on_the_credentials_file() -> None:
    unit_text = UNIT.read_text()
    readme = README.read_text()
    assert "root:root 0600" in unit_text
    assert "install -m 0600 -o root -g root /dev/null /etc/llm-gateway/credentials.env" in readme
    assert "`credentials.env` is `root:root 0600`" in readme
    assert "restart" in unit_text and "not `systemctl reload`" in unit_text
