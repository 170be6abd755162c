"""LLM gateway: an aiohttp reverse proxy in front of LLM providers."""

__version__ = "0.1.0"
