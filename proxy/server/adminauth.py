"""Who may use the admin listener: the admin token, or loopback callers where allowed."""

from __future__ import annotations

import hmac
import ipaddress

from proxy.config.values import Admin


def is_loopback(remote: str | None) -> bool:
    if remote is None:
        return False
    try:
        ip = ipaddress.ip_address(remote)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def allowed(admin: Admin, authorization: str | None, remote: str | None, *, metrics: bool) -> bool:
    """The token as `Authorization: Bearer TOKEN` (compared in constant time), or a loopback
    caller when `loopback_without_token` (or, for /metrics only, `metrics_open`) says so."""
    token = admin.token
    if token is not None and authorization is not None:
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            return True
    if admin.loopback_without_token or (metrics and admin.metrics_open):
        return is_loopback(remote)
    return False
