"""Set up governance for one process: the keys file, open-mode warning, ledger, spend restore."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from proxy.config.values import Config, ConfigError
from proxy.governance import keyfile
from proxy.governance.ledger import Ledger
from proxy.governance.limits import KeyTable
from proxy.ops import logs
from proxy.server.governor import Governor
from proxy.state.base import LimitState
from proxy.state.memory import MemoryState
from proxy.state.redis import RedisState, connect
from proxy.state.shared import SharedState


def ledger_path(config_path: Path, config: Config) -> Path | None:
    if config.server.ledger is None:
        return None
    p = Path(config.server.ledger)
    return p if p.is_absolute() else config_path.parent / p


def load_keys(config_path: Path, config: Config) -> tuple[KeyTable | None, Path]:
    """The compiled keys file (None: open); ConfigError for a broken file, or for none at all
    when `require_keys` is set. Also checked by a supervisor before it starts workers."""
    keys_path = keyfile.keys_path(config_path, config.server.keys_file)
    table = keyfile.load(keys_path)
    if table is None and config.server.require_keys:
        hint = "create one with `gateway keys new`"
        raise ConfigError([f"server.require_keys: no keys file at {keys_path} ({hint})"])
    return table, keys_path


def open_governor(config_path: Path, config: Config) -> tuple[Governor, Path]:
    """The governor with the keys file loaded, the ledger open and the prices at hand."""
    table, keys_path = load_keys(config_path, config)
    path = ledger_path(config_path, config)
    ledger = None
    if path is not None:
        ledger = Ledger(path)
        try:
            ledger.start()
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError([f"server.ledger: cannot open {path}: {exc}"]) from None
    governor = Governor(keys=table, state=open_state(config), ledger=ledger)
    governor.webhook = config.server.budget_webhook
    return governor, keys_path


def open_state(config: Config) -> LimitState:
    """The configured limits backend; a Redis pool connects lazily, at the first request."""
    st = config.state
    if st.backend != "redis":
        return MemoryState()
    remote = RedisState(connect(st), st.prefix, st.parallel_lease_s)
    logs.event("state_backend", backend="redis", url=st.url_ref, on_error=st.on_state_error)
    return SharedState(remote, fail_open=st.on_state_error == "open", timeout_s=st.timeout_s)


def warn_if_open(governor: Governor, keys_path: Path) -> None:
    """Said loudly once the gateway listens (a start that fails says only why it failed)."""
    if governor.keys is None:
        logs.warning(
            "gateway_open",
            message="NO KEYS FILE: anyone who reaches the port can use every route; "
            "create keys with `gateway keys new` or set server.require_keys = true",
            keys_file=str(keys_path),
        )
