"""Provider capacity of one upstream: own use in the last minute plus what the provider reports."""

from __future__ import annotations

from collections.abc import Mapping

from proxy.config.values import Upstream
from proxy.governance.windows import WINDOW_S, SlidingWindow
from proxy.routing.retryafter import parse_go_duration

REPORT_TTL_S = 60.0
"""How long a provider's `remaining` figure is trusted when it names no reset time."""

_REQUESTS = ("x-ratelimit-remaining-requests", "anthropic-ratelimit-requests-remaining")
_TOKENS = ("x-ratelimit-remaining-tokens", "anthropic-ratelimit-tokens-remaining")
_RESETS = ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")


class CapacityState:
    """Per upstream: the gateway's own requests and tokens this minute, and the provider's last
    `remaining` figures less what was sent since. Headroom is the smallest share left."""

    __slots__ = (
        "reported_requests",
        "reported_tokens",
        "reported_until",
        "requests",
        "sent_requests",
        "sent_tokens",
        "tokens",
    )

    def __init__(self) -> None:
        self.requests = SlidingWindow()
        self.tokens = SlidingWindow()
        self.reported_requests: int | None = None
        self.reported_tokens: int | None = None
        self.reported_until = 0.0
        self.sent_requests = 0
        self.sent_tokens = 0

    def spend(self, tokens: int, now: float) -> None:
        """One request with `tokens` (prompt estimate + max_tokens) goes to this upstream now."""
        self.requests.add(1, now)
        self.tokens.add(tokens, now)
        self.sent_requests += 1
        self.sent_tokens += tokens

    def observe(self, headers: Mapping[str, str], now: float) -> None:
        """Take the provider's `x-ratelimit-remaining-*` / `anthropic-ratelimit-*-remaining`."""
        requests = _first_int(headers, _REQUESTS)
        tokens = _first_int(headers, _TOKENS)
        if requests is None and tokens is None:
            return
        self.reported_requests = requests
        self.reported_tokens = tokens
        resets = [d for name in _RESETS if (v := headers.get(name)) and (d := parse_go_duration(v))]
        self.reported_until = now + (max(resets) if resets else REPORT_TTL_S)
        self.sent_requests = 0
        self.sent_tokens = 0

    def headroom(self, up: Upstream, tokens: int, now: float) -> float:
        """Share of the tightest limit left after this request; below 0: it does not fit."""
        shares = [1.0]
        reported = now < self.reported_until
        if up.rpm is not None:
            left = up.rpm - self.requests.used(now) - 1
            shares.append(left / up.rpm)
            if reported and self.reported_requests is not None:
                shares.append((self.reported_requests - self.sent_requests - 1) / up.rpm)
        if up.tpm is not None:
            left = up.tpm - self.tokens.used(now) - tokens
            shares.append(left / up.tpm)
            if reported and self.reported_tokens is not None:
                shares.append((self.reported_tokens - self.sent_tokens - tokens) / up.tpm)
        return min(shares)

    def wait_s(self, up: Upstream, tokens: int, now: float) -> float:
        """Seconds until this request would fit (for a gateway 429's Retry-After)."""
        waits = [0.001]
        if up.rpm is not None and not self.requests.fits(1, up.rpm, now):
            waits.append(self.requests.retry_after(1, up.rpm, now))
        if up.tpm is not None and not self.tokens.fits(tokens, up.tpm, now):
            waits.append(self.tokens.retry_after(tokens, up.tpm, now))
        if now < self.reported_until and (
            (self.reported_requests is not None and self.reported_requests - self.sent_requests < 1)
            or (
                self.reported_tokens is not None
                and self.reported_tokens - self.sent_tokens < tokens
            )
        ):
            waits.append(self.reported_until - now)
        return min(max(waits), WINDOW_S)


def limited(up: Upstream) -> bool:
    """The upstream declares provider limits (`rpm`, `tpm`), so capacity is tracked for it."""
    return up.rpm is not None or up.tpm is not None


def _first_int(headers: Mapping[str, str], names: tuple[str, ...]) -> int | None:
    for name in names:
        value = headers.get(name)
        if value is not None:
            try:
                return max(0, int(value.strip()))
            except ValueError:
                continue
    return None
