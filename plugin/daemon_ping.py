"""Does the daemon (thick mode) answer on its unix socket? For `doctor` and readiness.

TODO(lead, issue 12): the daemon's wire format is being built concurrently. Point PING_REQUEST
and `_answered` at the daemon's real ping when it lands; until then a ping is: connect, send
PING_REQUEST, and any non-empty answer within the timeout counts as the daemon answering.
"""

from __future__ import annotations

import socket
from typing import NamedTuple

PING_REQUEST = b'{"ping": 1}\n'
TIMEOUT_SECONDS = 2.0


class Ping(NamedTuple):
    ok: bool
    detail: str   # what answered, or why nothing did


def _answered(reply: bytes) -> bool:
    return bool(reply.strip())


def ping(path: str, timeout: float = TIMEOUT_SECONDS) -> Ping:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as s:
        s.settimeout(timeout)
        try:
            s.connect(path)
            s.sendall(PING_REQUEST)
            reply = s.recv(4096)
        except TimeoutError:
            return Ping(False, f"no answer within {timeout:g}s")
        except OSError as e:
            return Ping(False, e.strerror or str(e))
    if not _answered(reply):
        return Ping(False, "connection closed without an answer")
    return Ping(True, reply.strip()[:80].decode("utf-8", "replace"))
