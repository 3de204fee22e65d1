"""Raw rtnetlink for tests: altnames the kernel accepts but `ip` refuses (white space, '/',
newline), added the way a pod with NET_ADMIN can add them. Tests only: the plugin is a pure
ip-command backend.

`add_altname(netns, ifname, altname)` runs this file as a script inside the named netns.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import sys

RTM_NEWLINKPROP = 108
IFLA_PROP_LIST = 52
IFLA_ALT_IFNAME = 53
NLA_F_NESTED = 0x8000
NLM_F_REQUEST_ACK = 1 | 4


def _attr(kind: int, data: bytes) -> bytes:
    size = 4 + len(data)
    return struct.pack("=HH", size, kind) + data + b"\0" * (-size % 4)


def _newlinkprop(index: int, altname: bytes) -> int:
    """RTM_NEWLINKPROP with one IFLA_ALT_IFNAME; the kernel's errno (0: added)."""
    body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, index, 0, 0)
    body += _attr(IFLA_PROP_LIST | NLA_F_NESTED, _attr(IFLA_ALT_IFNAME, altname + b"\0"))
    msg = struct.pack("=IHHII", 16 + len(body), RTM_NEWLINKPROP, NLM_F_REQUEST_ACK, 1, 0) + body
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0) as s:
        s.sendto(msg, (0, 0))
        reply = s.recv(65536)
    return -struct.unpack_from("=i", reply, 16)[0]


def add_altname(netns: str, ifname: bytes, altname: bytes) -> None:
    """Give the link `ifname` (bytes) in the named netns the altname `altname` (bytes)."""
    subprocess.run(["ip", "netns", "exec", netns, sys.executable, __file__, ifname.hex(),
                    altname.hex()], check=True, timeout=30)


if __name__ == "__main__":
    name = bytes.fromhex(sys.argv[1]).decode("utf-8", "surrogateescape")
    err = _newlinkprop(socket.if_nametoindex(name), bytes.fromhex(sys.argv[2]))
    if err:
        sys.exit(f"RTM_NEWLINKPROP: errno {err}")
