"""The thin side of thick mode: hand the request to the node's resident daemon, if it takes it.

Wire (unix stream socket; a frame is a 4-byte big-endian length and that many bytes):
    shim   -> daemon  frame(b"CNI 1"), frame(env as NUL-separated K=V), frame(stdin)
    daemon -> shim    b"A"  (a forked child holds the request and will run it when told)
    shim   -> daemon  b"G"  (the shim is committed: from here on it never falls back)
    daemon -> shim    frame(exit code, decimal), frame(stdout bytes)
    PING: frame(b"PING 1"), frame(b""), frame(b"") -> frame(b"PONG <daemon pid>")
"1" is the wire version: a daemon that does not speak the shim's closes without "A" (a
rolling upgrade may pair a new shim with an old daemon for a moment): the request runs in
process. No JSON on this path: `json` (and the `re` it loads) would cost the shim ~3 ms.

Until the shim has sent "G", nothing has run: no socket, a refused or dropped connection, a
daemon that shuts down or is too slow to answer all mean the request runs in process. After
"G", a daemon that dies gives code 11: the per-device lock and the write-ahead record make
the runtime's retry (and DEL) safe, while running it here too could race the dying child.

Imports only what forwarding needs: this runs at every pod start. `_socket` is the C module
under `socket` (0.1 ms to import instead of 2 ms: `socket` pulls in selectors and enums), and
without a socket file nothing is imported at all.
"""

from __future__ import annotations

import _socket
import os

from plugin.errors import TRY_AGAIN_LATER, CniError

TYPE_CHECKING = False
if TYPE_CHECKING:   # (typing and collections.abc cost imports at run time)
    from collections.abc import Mapping

# Same names and defaults as plugin.policy (a unit test keeps them equal); importing policy
# here would cost its dataclass on every request.
SOCKET_ENV = "AMD_HOST_DEVICE_SOCKET"
POLICY_ENV = "AMD_HOST_DEVICE_NODE_CONFIG"
DEFAULT_SOCKET = "/run/amd-host-device/daemon.sock"
DEFAULT_POLICY = "/etc/cni/net.d/amd-host-device.d/amd-host-device.conf"
# What the shim forwards: the runtime's CNI_* and our own overrides. Nothing else (not PATH:
# the daemon runs its own ip and nsenter). The caller is root on the node (the daemon checks),
# so these are the values it could give the in-process plugin anyway.
FORWARDED_PREFIXES = ("CNI_", "AMD_HOST_DEVICE_")
ACCEPT_SECONDS = 5.0     # connect + the daemon's "A": a healthy daemon forks in milliseconds
RESULT_SECONDS = 300.0   # > the plugin's own bounds (lock 20 s, delegate 60 s, retries)
MAX_FRAME = 16 * 1024 * 1024
ACCEPTED, GO = b"A", b"G"
WIRE_VERSION = b"1"
CNI, PING, PONG = b"CNI", b"PING", b"PONG"


class Lost(Exception):
    """The connection ended (or timed out) before a whole frame arrived."""


def send_frame(sock: _socket.socket, data: bytes) -> None:
    sock.sendall(len(data).to_bytes(4, "big") + data)


def _recv_exact(sock: _socket.socket, n: int, deadline: float | None = None) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        if deadline is not None:
            _bound(sock, deadline)
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise Lost(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def _bound(sock: _socket.socket, deadline: float) -> None:
    """Give the next recv only what is left of the whole exchange's time (time.monotonic):
    a peer dribbling a byte at a time must not earn a fresh timeout per recv."""
    from time import monotonic

    left = deadline - monotonic()
    if left <= 0:
        raise TimeoutError("deadline passed")
    sock.settimeout(left)


def recv_frame(sock: _socket.socket, deadline: float | None = None) -> bytes:
    """One frame; with a deadline (time.monotonic), all of it must arrive by then
    (TimeoutError otherwise)."""
    size = int.from_bytes(_recv_exact(sock, 4, deadline), "big")
    if size > MAX_FRAME:
        raise Lost(f"frame of {size} bytes")
    return _recv_exact(sock, size, deadline)


class _ScanContext:
    """What the C JSON scanner reads from json.JSONDecoder: the defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float   # NaN, Infinity, -Infinity, as json.loads reads them


def _asked_version(stdin: bytes) -> str | None:
    import _json

    try:
        text = stdin.decode("utf-8-sig").strip(" \t\n\r")   # json's own whitespace
    except UnicodeDecodeError:
        return None
    if not text:
        return None
    try:
        # typeshed names the context's type after the scanner; any object with its fields works
        obj, end = _json.make_scanner(_ScanContext())(text, 0)  # type: ignore[arg-type]
    except (ValueError, StopIteration, RecursionError):
        return None
    if end != len(text) or not isinstance(obj, dict):
        return None
    asked = obj.get("cniVersion")
    return asked if isinstance(asked, str) and asked else None


def version_reply(stdin: bytes, supported: tuple[str, ...]) -> bytes:
    """VERSION's answer, the bytes json.dumps would give, without the json package: with the
    `re` it loads it is ~6 ms of a ~14 ms start. The C scanner and encoder under it suffice.
    The caller's cniVersion is echoed; anything unreadable gets the newest."""
    import _json

    enc = _json.encode_basestring_ascii
    version = _asked_version(stdin) or supported[-1]
    return (f'{{"cniVersion": {enc(version)}, "supportedVersions": '
            f'[{", ".join(map(enc, supported))}]}}\n').encode()


def forwarded_env(environ: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if k.startswith(FORWARDED_PREFIXES)}


def encode_env(env: Mapping[str, str]) -> bytes:
    return b"\0".join(f"{k}={v}".encode("utf-8", "surrogateescape") for k, v in env.items())


def decode_env(data: bytes) -> dict[str, str] | None:
    """The forwarded env, or None if it is not what a shim sends (only our prefixes)."""
    env = {}
    for item in data.split(b"\0") if data else ():
        key, sep, value = item.decode("utf-8", "surrogateescape").partition("=")
        if not sep or not key.startswith(FORWARDED_PREFIXES):
            return None
        env[key] = value
    return env


def request(sock: _socket.socket, op: bytes, env: bytes = b"", stdin: bytes = b"") -> None:
    send_frame(sock, op + b" " + WIRE_VERSION)
    send_frame(sock, env)
    send_frame(sock, stdin)


def socket_path(environ: Mapping[str, str]) -> str | None:
    """The env override, else the node policy's `socket`, else the default. None when the
    setting is unusable: the in-process path then reports it as the policy error it is."""
    value = environ.get(SOCKET_ENV, "")
    if value:
        ok = os.path.isabs(value) and "\0" not in value and ".." not in value.split("/")
        return value if ok else None
    policy_file = environ.get(POLICY_ENV) or DEFAULT_POLICY
    if not os.path.exists(policy_file):
        return DEFAULT_SOCKET
    from plugin import policy

    try:
        return policy.load(environ).socket
    except CniError:
        return None


def connect(path: str, timeout: float) -> _socket.socket:
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except BaseException:
        sock.close()
        raise
    return sock   # a bare _socket.socket: no `with`, close() it


def forward(environ: Mapping[str, str], stdin: bytes) -> tuple[int, bytes] | CniError | None:
    """(exit code, stdout) from the daemon; a CniError (code 11) if it took the request and
    then died; None if it did not take it (run in process)."""
    path = socket_path(environ)
    if path is None or not os.path.exists(path):
        return None
    env = encode_env(forwarded_env(environ))
    try:
        sock = connect(path, ACCEPT_SECONDS)
    except OSError:
        return None   # no socket, no listener, not a socket: no daemon here
    try:
        try:
            request(sock, CNI, env, stdin)
            if sock.recv(1) != ACCEPTED:
                return None   # refused, or shutting down: it ran nothing
            sock.sendall(GO)
        except OSError:
            return None
        sock.settimeout(RESULT_SECONDS)
        try:
            code = int(recv_frame(sock))
            return code, recv_frame(sock)
        except (OSError, Lost, ValueError) as e:
            why = "did not answer in time" if isinstance(e, TimeoutError) else "died mid-request"
            return CniError(TRY_AGAIN_LATER, f"the amd-host-device daemon {why}",
                            f"{path}: {e}; the request may have been partly done: retry, or DEL")
    finally:
        sock.close()
