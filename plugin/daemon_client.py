"""Asking the daemon whether it serves: the readiness probe and operator tools use this."""

from __future__ import annotations

from plugin import shim


def ping(path: str, timeout: float = 2.0) -> bool:
    """True if a daemon accepted a connection on `path` and answered a PING through a forked
    child (the whole request path but the handlers)."""
    try:
        sock = shim.connect(path, timeout)
    except OSError:
        return False
    try:
        shim.request(sock, shim.PING)
        reply = shim.recv_frame(sock)
    except (OSError, shim.Lost):
        return False
    finally:
        sock.close()
    return reply.startswith(shim.PONG + b" ")
