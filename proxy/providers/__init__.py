"""Provider dialects: one translator per API dialect behind the seam in `base`.

A dialect builds the upstream request, classifies an upstream error and observes (or strips)
usage in answers. Adding a dialect is one module here and its name in `config.values.Provider`.
Level: pure.
May import: config, core
"""
