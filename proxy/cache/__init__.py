"""Cache: exact-match keys of normalised requests, an LRU store with TTL, single-flight.

`key` and `lru` are pure (the clock is passed in); `flight` coordinates concurrent misses.
Not yet wired into the pipeline's `lookup` stage.
Level: pure + effects.
May import: config, core
"""
