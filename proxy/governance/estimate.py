"""Token estimates without a tokenizer: for reservations, and when a provider reports no usage."""

from __future__ import annotations

from proxy.core.exchange import Exchange

BYTES_PER_TOKEN = 4
"""English text runs ~4 characters a token in OpenAI's tokenizers; JSON syntax in a request
body makes the estimate err high, which is the safe side for a reservation."""


def tokens_of(size_bytes: int) -> int:
    return max(1, -(-size_bytes // BYTES_PER_TOKEN)) if size_bytes > 0 else 0


def request_tokens(ex: Exchange) -> tuple[int, int]:
    """(prompt estimate, output cap) of a request: what admission reserves and routing weighs."""
    cap = ex.peek.max_tokens if ex.peek is not None else None
    return tokens_of(len(ex.body)), cap if cap is not None else ex.snap.reserve_max_tokens
