"""A faithful fake LLM provider (OpenAI and Anthropic dialects) for tests, demo and bench."""

from proxy.fake.behaviour import Behaviour
from proxy.fake.server import FakeProvider, RecordedRequest

__all__ = ["Behaviour", "FakeProvider", "RecordedRequest"]
