"""Provider signals between gateway processes: what a 429 pause or an ejection looks like, and how
one learned from another process is applied to this process's stats."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from proxy.routing.stats import UpstreamStats


class Signal(StrEnum):
    PAUSE = "pause"
    """The upstream answered 429: keep it out of selection for the seconds it asked."""
    EJECT = "eject"
    """The upstream failed enough to be ejected here: others eject it for as long."""


Emit = Callable[[str, Signal, float], None]
"""(upstream identity, signal, seconds from now)."""


class SignalSink:
    """Where stats send the signals they raise; `emit` is None while nothing is listening
    (one process, memory state), so the default costs one attribute check."""

    __slots__ = ("emit",)

    def __init__(self) -> None:
        self.emit: Emit | None = None


def identity(fingerprint: str) -> str:
    """The same upstream (provider, URL, model, credential) in any process and under any name;
    hashed again so nothing derived from a credential leaves the process."""
    return hashlib.sha256(fingerprint.encode()).hexdigest()[:24]


def apply(st: UpstreamStats, signal: Signal, seconds: float, now: float) -> bool:
    """Take another process's signal (monotonic `now`); False if this one already knew as much.
    Never re-emitted, and an ejection learned this way does not grow this process's own
    ejection count: it ends with the same one-probe recovery as a local one."""
    until = now + seconds
    if signal is Signal.PAUSE:
        if st.limited_until >= until:
            return False
        st.limited_until = until
        st.limit_probe = True
        return True
    if st.ejected_until >= until:
        return False
    st.ejected_until = until
    st.ejected_at = now
    st.last_ejection_s = seconds
    st.probing = False
    return True
