"""Reload keys.toml on change or SIGHUP: compile the whole file, then swap the table atomically."""

from __future__ import annotations

import asyncio
from pathlib import Path

import watchfiles

from proxy.config.values import ConfigError
from proxy.governance import keyfile
from proxy.governance.limits import KeyTable
from proxy.ops import logs
from proxy.server.governor import Governor

DEBOUNCE_MS = 50


def describe(table: KeyTable | None) -> dict[str, object]:
    if table is None:
        return {"keys": 0, "open": True}
    return {"keys": len(table.by_hash), "teams": len(table.teams), "open": False}


class KeyReloader:
    """Keeps the governor's key table in step with the file; a broken file keeps the old table,
    and a deleted file keeps it too (deleting keys must never silently open the gateway)."""

    def __init__(self, path: Path, governor: Governor) -> None:
        self.path = path
        self.governor = governor
        self._lock = asyncio.Lock()

    async def reload(self, trigger: str) -> bool:
        async with self._lock:
            loop = asyncio.get_running_loop()
            try:
                table = await loop.run_in_executor(None, keyfile.load, self.path)
            except ConfigError as exc:
                logs.error(
                    "keys_reload_failed",
                    trigger=trigger,
                    path=str(self.path),
                    errors=list(exc.errors),
                    kept="previous keys",
                )
                return False
            if table is None:
                if self.governor.keys is not None:
                    logs.error("keys_file_missing", path=str(self.path), kept="previous keys")
                    return False
                return True
            was_open = self.governor.keys is None
            self.governor.keys = table  # one assignment: requests see the old or the new table
            logs.event("keys_reloaded", trigger=trigger, **describe(table))
            if was_open:
                logs.warning("gateway_now_requires_keys", path=str(self.path))
            return True

    async def watch(self) -> None:
        name = self.path.name

        def only_keys(_change: watchfiles.Change, path: str) -> bool:
            return Path(path).name == name

        self.path.parent.mkdir(parents=True, exist_ok=True)
        async for _changes in watchfiles.awatch(
            self.path.parent,
            watch_filter=only_keys,
            debounce=DEBOUNCE_MS,
            step=20,
            recursive=False,
        ):
            await self.reload("file")
