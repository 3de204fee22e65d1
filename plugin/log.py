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


def _write(text: str) -> None:
    """Best-effort: a closed stderr (the runtime or Multus died mid-ADD) must not fail the
    command, or an ADD would stop between moving the NIC and answering. After the first
    failure fd 2 points at /dev/null, so the unwritten rest and the exit-time flush cannot
    fail either."""
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError):
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


def event(msg: str) -> None:
    _write(_line("info", msg))


def warn(msg: str) -> None:
    _write(_line("warn", msg))


def error(msg: str) -> None:
    _write(_line("error", msg))


class _Span:
    """Adds the time spent inside `with span(bucket):` to the profile (when profiling)."""

    __slots__ = ("bucket", "started")

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        self.started = 0.0

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, *_: object) -> None:
        record(self.bucket, time.perf_counter() - self.started)


class _NoSpan:
    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        return None


_NO_SPAN = _NoSpan()


def span(bucket: str) -> _Span | _NoSpan:
    return _Span(bucket) if _PROFILE else _NO_SPAN


def record(bucket: str, seconds: float) -> None:
    if _PROFILE:
        _timings.append((bucket, seconds))


def timing(argv: Sequence[str], seconds: float) -> None:
    """Per-command cost, kept only when profiling (make bench)."""
    if _PROFILE:
        words = [a for a in argv if not a.startswith("--net=")]
        if words and words[0] == "nsenter":
            words = ["nsenter", *words[1:]]
        record("cmd " + " ".join(words[:4]), seconds)


def dump(total: float) -> None:
    """One stderr line with where the time went: `profile {json}`."""
    if _PROFILE:
        import json

        buckets: dict[str, float] = {}
        for bucket, seconds in _timings:
            buckets[bucket] = buckets.get(bucket, 0.0) + seconds * 1000
        buckets["total in process"] = total * 1000
        _write("amd-host-device profile " + json.dumps(buckets) + "\n")
