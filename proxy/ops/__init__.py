"""Operations: structured logs, the access line, Prometheus metrics and event-loop lag.

Level: effects (writes to stdout).
May import: config, core
"""
