"""A faithful fake LLM provider (OpenAI, Anthropic and Gemini dialects) for tests, demo and bench.

Level: test and demo support; speaks the wire formats itself.
May import: (nothing else in proxy)
"""

from proxy.fake.behaviour import Behaviour
from proxy.fake.server import FakeProvider, RecordedRequest

__all__ = ["Behaviour", "FakeProvider", "RecordedRequest"]
