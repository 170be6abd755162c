"""Reload gateway.toml on file change or SIGHUP: parse, validate, compile, then swap atomically."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import watchfiles

from proxy.config.compiler import compile_text
from proxy.config.values import Config, ConfigError
from proxy.ops import logs
from proxy.routing.balancer import Balancer
from proxy.server.runtime import ConfigStore
from proxy.server.sdnotify import Notifier

DEBOUNCE_MS = 50
"""Editors write in bursts; wait this long for quiet before reading the file."""


def config_diff(old: Config, new: Config) -> dict[str, list[str]]:
    """What a reload changed, by name, for the one log line per reload."""
    diff: dict[str, list[str]] = {}
    changed_settings = [
        name
        for name, before, after in (
            ("server", old.server, new.server),
            ("panic", old.panic, new.panic),
            (
                "max_rate_limit_pause_s",
                old.max_rate_limit_pause_s,
                new.max_rate_limit_pause_s,
            ),
        )
        if before != after
    ]
    if changed_settings:
        diff["settings_changed"] = changed_settings
    for section, before, after in (
        ("upstreams", old.upstreams, new.upstreams),
        ("routes", old.routes, new.routes),
    ):
        added = sorted(set(after) - set(before))
        removed = sorted(set(before) - set(after))
        changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
        for verb, names in (("added", added), ("removed", removed), ("changed", changed)):
            if names:
                diff[f"{section}_{verb}"] = names
    return diff


class Reloader:
    """Owns reloads of one file; a lock keeps a SIGHUP and a file event from interleaving."""

    def __init__(
        self,
        path: Path,
        store: ConfigStore,
        balancer: Balancer,
        notifier: Notifier,
        compiler: Callable[[str], Config] = compile_text,
    ) -> None:
        self.path = path
        self.compile = compiler
        self.store = store
        self.balancer = balancer
        self.notifier = notifier
        self._lock = asyncio.Lock()
        self._digest = ""
        self.failures = 0
        self.successes = 0
        self.last: dict[str, object] = {}
        """The last reload's outcome (trigger, ok, errors, at) for the admin status."""
        self._failed_last = False
        self._was_missing = False
        """The file was gone: its return is confirmed even when it comes back unchanged."""

    def remember(self, text: str) -> None:
        self._digest = hashlib.sha256(text.encode()).hexdigest()

    async def reload(self, trigger: str, text: str | None = None) -> bool:
        """Apply the file (or `text` already read from it) if it is valid; keep the running
        snapshot otherwise. True if applied."""
        async with self._lock:
            self.notifier.reloading()
            ok, status = await self._reload(trigger, text)
            self.notifier.ready(status=status)
            return ok

    async def _read(self) -> str:
        return await asyncio.get_running_loop().run_in_executor(None, self.path.read_text, "utf-8")

    async def settled(self) -> str | None:
        """The file's text once it stayed the same for the settle time; None if it is gone.

        A writer that truncates and writes in steps leaves, for a moment, a valid file with
        less in it; only content unchanged for `reload_settle_ms` is taken as finished. The
        file is re-read every fifth of that time, so the wait ends one settle time after the
        last change, whatever the rhythm of the writer.
        """
        loop = asyncio.get_running_loop()
        settle = self.store.current.server.reload_settle_s
        text = await self._read_or_none()
        since = loop.time()
        while True:
            await asyncio.sleep(settle / 5)
            again = await self._read_or_none()
            if again != text:
                text, since = again, loop.time()
            elif loop.time() - since >= settle:
                return text

    async def _read_or_none(self) -> str | None:
        try:
            return await self._read()
        except (OSError, UnicodeDecodeError):
            return None  # missing (mid-rename) or being rewritten: looked at again

    async def _reload(self, trigger: str, text: str | None) -> tuple[bool, str]:
        if text is None:
            try:
                text = await self._read()
            except (OSError, UnicodeDecodeError) as exc:
                return self._failed(trigger, [f"cannot read {self.path}: {type(exc).__name__}"])
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest == self._digest:
            # Said every time, so a fixed edit or a no-op SIGHUP is the journal's last word,
            # never an earlier config_reload_failed.
            logs.event(
                "config_unchanged",
                trigger=trigger,
                generation=self.store.generation,
                outcome="unchanged, config OK",
                after_failure=self._failed_last,
            )
            self._failed_last = False
            return True, self._status("unchanged, config OK")
        try:
            new = self.compile(text)
        except ConfigError as exc:
            return self._failed(trigger, list(exc.errors))
        old = self.store.current
        # From here to the swap there is no await: requests see either snapshot, never a mix.
        kept, reset = self.balancer.adopt(new, time.monotonic())
        self.store.swap(new)
        logs.set_secrets(new.secrets)
        self._digest = digest
        self._failed_last = False
        self.successes += 1
        self.last = {"trigger": trigger, "ok": True, "errors": [], "at": time.time()}
        changes = config_diff(old, new)
        logs.event(
            "config_reloaded",
            trigger=trigger,
            generation=self.store.generation,
            stats_kept=len(kept),
            stats_reset=reset,
            **changes,
        )
        if (old.server.host, old.server.port, old.server.workers) != (
            new.server.host,
            new.server.port,
            new.server.workers,
        ):
            logs.warning("restart_required", reason="server.listen or server.workers changed")
        old_admin = None if old.admin is None else (old.admin.host, old.admin.port)
        if old_admin != (None if new.admin is None else (new.admin.host, new.admin.port)):
            logs.warning("restart_required", reason="[admin] added, removed or its listen changed")
        if old.tracing != new.tracing:
            logs.warning("restart_required", reason="[tracing] changed")
        if (old.server.keys_file, old.server.ledger) != (new.server.keys_file, new.server.ledger):
            logs.warning("restart_required", reason="server.keys_file or server.ledger changed")
        if old.state != new.state:
            logs.warning("restart_required", reason="the [state] section changed")
        if (old.cache.store, old.cache.max_total_bytes) != (
            new.cache.store,
            new.cache.max_total_bytes,
        ):
            logs.warning("restart_required", reason="[cache] store or max_total_mb changed")
        return True, self._status("reloaded")

    def _failed(self, trigger: str, errors: list[str]) -> tuple[bool, str]:
        self.failures += 1
        self._failed_last = True
        self.last = {"trigger": trigger, "ok": False, "errors": errors, "at": time.time()}
        logs.error(
            "config_reload_failed",
            trigger=trigger,
            errors=errors,
            kept_generation=self.store.generation,
        )
        return False, f"reload failed, running generation {self.store.generation}: {errors[0]}"

    @property
    def digest(self) -> str:
        """SHA-256 of the running file's text."""
        return self._digest

    def _status(self, what: str) -> str:
        return f"{what}: generation {self.store.generation}"

    async def watch(self) -> None:
        """Watch the directory, not the file: editors save by writing a temp file and renaming."""
        name = self.path.name

        def only_config(_change: watchfiles.Change, path: str) -> bool:
            return Path(path).name == name

        async for _changes in watchfiles.awatch(
            self.path.parent,
            watch_filter=only_config,
            debounce=DEBOUNCE_MS,
            step=20,
            recursive=False,
        ):
            if self.store.current.server.reload_settle_s > 0:
                text = await self.settled()
                if text is None:
                    self._missing()
                # Events that came during the settle time lead here again with the same text;
                # the same text after a failed edit is reloaded to say the config is OK again.
                elif (
                    self._failed_last or self._was_missing or self._digest_of(text) != self._digest
                ):
                    self._was_missing = False
                    await self.reload("file", text)
            elif self.path.exists():
                await self.reload("file")
            else:
                self._missing()

    def _missing(self) -> None:
        self._was_missing = True
        logs.warning(
            "config_file_missing", path=str(self.path), kept_generation=self.store.generation
        )

    @staticmethod
    def _digest_of(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()
