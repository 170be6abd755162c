"""Server: the edge that wires it all: app, request pipeline, process lifecycle, workers.

Level: edge.
May import: config, core, providers, ops, routing, transport, fake, governance, state, cache
"""
