"""Start-up failures as one line that names the setting to change (no traceback)."""

from __future__ import annotations

import errno


def listen_error(exc: OSError, host: str, port: int) -> str:
    """What a failed bind means for the operator, naming `[server] listen`."""
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        why = "is already in use by another process"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        why = "needs a privilege this process lacks (ports below 1024 need CAP_NET_BIND_SERVICE)"
    elif exc.errno == errno.EADDRNOTAVAIL:
        why = "is not an address of this machine"
    else:
        why = f"cannot be bound ({exc.strerror or type(exc).__name__})"
    return f"server.listen: {shown} {why}; change [server] listen (demo: --port N) or free the port"
