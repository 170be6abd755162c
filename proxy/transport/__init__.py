"""Transport: the aiohttp client that sends attempts, the stream relay, header policy.

Level: effects.
May import: config, core, providers, ops, routing
"""
