"""State: the limits-and-budgets interface (reserve, settle, refund, counters) and its backends.

`base` states the interface in terms a Redis Lua script can implement atomically; `memory`
is the embedded single-process backend; `redis` the shared one, `shared` its outage policy.
Level: effects.
May import: config, core, governance, ops
"""
