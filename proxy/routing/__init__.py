"""Routing: upstream stats, selection strategies, retry hints, attempt ownership, failover.

The decisions are pure; `failover` runs the loop over a `send` callable (the transport seam in
`send`), so it is tested without sockets.
Level: pure decisions + the failover loop.
May import: config, core, providers, ops, governance
"""
