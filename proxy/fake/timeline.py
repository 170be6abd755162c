"""A fake provider's scripted incidents: which Behaviour answers at a time since the start."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from proxy.fake.behaviour import Behaviour


@dataclass(frozen=True, slots=True)
class Phase:
    """From start_s to end_s: `behaviour` answers a `rate` share of requests (else the default).

    `refuse` closes the listener for the phase (connection refused) instead.
    """

    start_s: float
    end_s: float
    behaviour: Behaviour
    rate: float = 1.0
    refuse: bool = False
    label: str = ""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start_s) and self.start_s >= 0):
            raise ValueError(f"phase start must be a finite number >= 0, got {self.start_s}")
        if not self.end_s > self.start_s:
            raise ValueError(f"phase end ({self.end_s}) must be after its start ({self.start_s})")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"phase rate must be within [0, 1], got {self.rate}")


@dataclass(frozen=True, slots=True)
class Timeline:
    """The default behaviour and the phases that replace it for a while (first match wins)."""

    default: Behaviour
    phases: tuple[Phase, ...] = ()

    def at(self, elapsed_s: float, rng: random.Random) -> Behaviour:
        """The behaviour of a request arriving elapsed_s after the timeline started."""
        for phase in self.phases:
            if phase.start_s <= elapsed_s < phase.end_s and not phase.refuse:
                if phase.rate >= 1.0 or rng.random() < phase.rate:
                    return phase.behaviour
                return self.default
        return self.default

    def refusals(self) -> tuple[tuple[float, float], ...]:
        """The windows (start, end) in which the listener is closed, in time order."""
        return tuple(sorted((p.start_s, p.end_s) for p in self.phases if p.refuse))

    @property
    def end_s(self) -> float:
        """When the last phase ends (0 without phases)."""
        return max((p.end_s for p in self.phases), default=0.0)
