"""Governance: virtual keys, limits and budgets, prices and cost, and the usage ledger.

Keys, limit windows, calendar periods, prices and estimates are pure; `keyfile` reads and
writes keys.toml, `pricetable` loads the shipped price table and `ledger` is the SQLite writer.
Level: pure + the file and SQLite edges.
May import: config, core, ops
"""
