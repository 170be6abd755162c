"""Config: the frozen snapshot values, the TOML reader, the compiler and route chains.

Level: pure (no I/O, no event loop). Everything else reads the snapshot built here.
May import: (nothing else in proxy)
"""
