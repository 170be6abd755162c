"""Cache: exact-match keys of normalised requests, stores with TTL, single-flight, replay.

`key`, `lru` and `replay` are pure (the clock is passed in); `store` and `redisstore` keep
entries in this process or in Redis; `flight` coordinates concurrent misses. The edge
(`proxy.server.caching`) wires them into the pipeline's `lookup` stage.
Level: pure + effects.
May import: config, core, providers, ops
"""
