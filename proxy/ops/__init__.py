"""Operations: structured logs and the access line (later metrics, admin views, traces).

Level: effects (writes to stdout).
May import: config, core
"""
