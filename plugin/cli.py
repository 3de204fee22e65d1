"""What a person at a node's shell gets: the about text, `--help`, `--version`, and the
operator subcommands (`list`, `doctor`).

Reached only when CNI_COMMAND is unset, so nothing here is imported on a runtime's path.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from plugin import CNI_VERSIONS, __version__

NAME = "amd-host-device"
# One line per subcommand, as the about text and --help show them.
SUBCOMMANDS = (
    ("list [--json]", "attachments on this node: pod, NIC, addresses, phase, orphans; "
                      "legacy mappings; corrupt records"),
    ("doctor [--json]", "check this node is ready for the plugin; exit 0 only if it is"),
    ("reconcile [--interval S]", "give back NICs of pods that died without a DEL"),
    ("daemon [--ping]", "serve CNI requests for the shim (thick mode) and reconcile; what "
                        "the DaemonSet runs"),
)


def about() -> str:
    """The reference plugins' skel text (name, version, CNI versions), then our subcommands."""
    lines = [f"CNI {NAME} plugin v{__version__}",
             f"CNI protocol versions supported: {', '.join(CNI_VERSIONS)}",
             "",
             f"Run by a CNI runtime (CNI_COMMAND set), or by hand: {NAME} <subcommand>"]
    width = max(len(usage) for usage, _ in SUBCOMMANDS)
    lines += [f"  {usage:<{width}}  {what}" for usage, what in SUBCOMMANDS]
    lines += ["  --help, --version"]
    return "\n".join(lines) + "\n"


def _write(stream: TextIO, text: str) -> None:
    try:
        stream.write(text)
        stream.flush()
    except (OSError, ValueError):
        pass


def _list(argv: Sequence[str]) -> int:
    from plugin import listing

    return listing.main(argv)


def _doctor(argv: Sequence[str]) -> int:
    from plugin import doctor

    return doctor.main(argv)


_COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {"list": _list, "doctor": _doctor}


def main(argv: Sequence[str]) -> int:
    if not argv:
        _write(sys.stderr, about())  # what skel does when CNI_COMMAND is unset
        return 0
    first, rest = argv[0], argv[1:]
    if first in ("-h", "--help", "help"):
        _write(sys.stdout, about())
        return 0
    if first in ("-V", "--version", "version"):
        _write(sys.stdout, f"{NAME} {__version__} (CNI {', '.join(CNI_VERSIONS)})\n")
        return 0
    command = _COMMANDS.get(first)
    if command is None:
        _write(sys.stderr, f"{NAME}: unknown subcommand {first[:40]!r}\n\n{about()}")
        return 2
    return command(rest)
