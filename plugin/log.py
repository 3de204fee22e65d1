"""One line per event on stderr (stdout carries the CNI result), with container and device."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence

_context: dict[str, str] = {}
_timings: list[tuple[str, float]] = []
_PROFILE = bool(os.environ.get("AMD_HOST_DEVICE_PROFILE"))


def bind(**fields: str) -> None:
    """Fields repeated on every later line (command, container, ifname, device)."""
    _context.update({k: v for k, v in fields.items() if v})


def _line(level: str, msg: str) -> str:
    ctx = " ".join(f"{k}={v}" for k, v in _context.items())
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    return f"{stamp} amd-host-device {level} {ctx} {msg}".replace("\n", " ") + "\n"


def event(msg: str) -> None:
    sys.stderr.write(_line("info", msg))


def warn(msg: str) -> None:
    sys.stderr.write(_line("warn", msg))


def error(msg: str) -> None:
    sys.stderr.write(_line("error", msg))


def timing(argv: Sequence[str], seconds: float) -> None:
    """Per-command cost, printed only when profiling (make bench)."""
    if _PROFILE:
        name = " ".join(a for a in argv[:4] if not a.startswith("--net="))
        _timings.append((name, seconds))
        sys.stderr.write(_line("profile", f"cmd={name!r} ms={seconds * 1000:.2f}"))


def mark(label: str, since: float) -> None:
    if _PROFILE:
        sys.stderr.write(_line("profile", f"phase={label} ms={(time.monotonic() - since) * 1000:.2f}"))
