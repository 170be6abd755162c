"""A rough input-token count for a Messages body, for count_tokens when no upstream can count."""

from __future__ import annotations

import orjson

CHARS_PER_TOKEN = 4
"""The usual rule of thumb for English text with BPE tokenizers (OpenAI's own guidance)."""


def estimate_input_tokens(body: bytes) -> int:
    """Tokens of the text a model would read: system, messages and tool definitions."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return 0
    if not isinstance(obj, dict):
        return 0
    chars = sum(_chars(obj.get(key)) for key in ("system", "messages", "tools"))
    return max(1, -(-chars // CHARS_PER_TOKEN))


def _chars(value: object) -> int:
    """Characters of the strings inside a JSON value (keys and punctuation not counted)."""
    if isinstance(value, str):
        # Base64 image data is not read as text; an image costs roughly a fixed amount.
        return 1600 * CHARS_PER_TOKEN if len(value) > 20_000 else len(value)
    if isinstance(value, dict):
        return sum(_chars(v) for k, v in value.items() if k not in ("type", "media_type"))
    if isinstance(value, list):
        return sum(_chars(v) for v in value)
    return 0
