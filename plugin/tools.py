"""Which copy of each command the plugin runs: the bundle's own, or the node's. The one place
that decides it (the backend, the command shell, nsenter's inner command and doctor ask here).

The frozen bundle (container/freeze.py) carries its own ELF loader, C library, `ip`,
`ethtool`, `nsenter` and `sh` (dash), and runs them by absolute path through its own loader,
never PATH: every node parses the one iproute2 this bundle was tested with, and a node with
another libc, or none, or no iproute2 at all, is served the same. Run from a checkout (the dev
venv) there is no bundle: the node's tools by name on PATH, and /bin/sh.

AMD_HOST_DEVICE_TOOLS=node makes a bundle use the node's tools too (the runtime's environment
is trusted, as PATH is): the suites that put a fault-injecting `ip` on PATH set it, so that
they test the installed plugin's handling of those faults (`make test-installed`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import NamedTuple

from plugin import settings

NAMES = ("ip", "ethtool", "nsenter", "sh")
LOADER = "ld-linux-x86-64.so.2"
TOOLS_ENV = settings.TOOLS_ENV
_NODE_SH = "/bin/sh"


class Tool(NamedTuple):
    """How to run one command: `argv` is what goes before its arguments."""

    name: str
    argv: tuple[str, ...]
    bundled: bool

    @property
    def binary(self) -> str:
        """The program itself: the bundle's file, or the node's name (looked up on PATH)."""
        return self.argv[-1]

    def describe(self, path: str | None = None) -> str:
        """"bundled /x/libexec/ip" or "node /usr/sbin/ip" (or "node: not found on PATH")."""
        if self.bundled:
            return f"bundled {self.binary}"
        import shutil

        found = shutil.which(self.binary, path=path if path is not None
                             else settings.current().environ.get("PATH"))
        return f"node {found}" if found else f"node: {self.name} not found on PATH"


_ROOT: str | None = None


def bundle_root() -> str:
    """The bundle this code runs from (<root>/lib/python3.X/plugin/tools.py, beside the
    bundle's loader and libexec/), or "" from a checkout."""
    global _ROOT
    if _ROOT is None:
        here = os.path.dirname(os.path.abspath(__file__))
        root = os.path.dirname(os.path.dirname(os.path.dirname(here)))
        ours = (os.path.isfile(os.path.join(root, "lib", LOADER))
                and os.path.isdir(os.path.join(root, "libexec")))
        _ROOT = root if ours else ""
    return _ROOT


def tool(name: str) -> Tool:
    root = bundle_root()
    if root and settings.current().tools != "node":
        lib = os.path.join(root, "lib")
        return Tool(name, (os.path.join(lib, LOADER), "--library-path", lib, "--argv0", name,
                           os.path.join(root, "libexec", name)), True)
    return Tool(name, (_NODE_SH if name == "sh" else name,), False)


def expand(argv: Sequence[str]) -> list[str]:
    """The argv to exec for a command written with a tool's name first ("ip", "-j", ...):
    the bundled copy through the bundle's loader, or the node's as named. nsenter execs the
    command after its options: that one is expanded too."""
    if not argv or argv[0] not in NAMES:
        return list(argv)
    head = list(tool(argv[0]).argv)
    if argv[0] != "nsenter":
        return head + list(argv[1:])
    at = 1
    while at < len(argv) and argv[at].startswith("-"):
        at += 1
    return head + list(argv[1:at]) + expand(argv[at:])

