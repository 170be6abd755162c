"""Core vocabulary every layer shares: errors, failure kinds, and the exchange record.

An exchange is one client request from arrival to settle; routing, relay, logs (and later
metrics, ledger and budgets) read and fill that one record.
Level: pure.
May import: config
"""
