"""The profile `make bench` reads: where one request's time goes, by bucket.

Off unless AMD_HOST_DEVICE_PROFILE is set; then one stderr line at the end of the request,
`amd-host-device profile {json}` (milliseconds per bucket). Off, every call here is a no-op.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from plugin import settings

# Read when first imported: by a request (after request.answer installed its settings), or by
# the daemon's warm-up (its own environment, as before the daemon forks its children).
ENABLED = settings.current().profile
_buckets: list[tuple[str, float]] = []


def add(bucket: str, seconds: float) -> None:
    if ENABLED:
        _buckets.append((bucket, seconds))


class _Span:
    """Adds the time spent inside `with span(bucket):` to the bucket."""

    __slots__ = ("bucket", "started")

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        self.started = 0.0

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, *_: object) -> None:
        add(self.bucket, time.perf_counter() - self.started)


class _NoSpan:
    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        return None


_NO_SPAN = _NoSpan()


def span(bucket: str) -> _Span | _NoSpan:
    return _Span(bucket) if ENABLED else _NO_SPAN


def command(argv: Sequence[str], seconds: float) -> None:
    """Per-command cost, bucketed by the command's first words; namespace names and paths are
    dropped so buckets compare across runs and machines."""
    if ENABLED:
        words: list[str] = []
        skip = False
        for a in argv:
            if skip:
                words.append("<netns>")
                skip = False
            elif a.startswith("--net="):
                continue
            else:
                words.append(a)
                skip = a == "-n" and words[0] == "ip"
        add("cmd " + " ".join(words[:4]), seconds)


def dump(total: float) -> None:
    if ENABLED:
        import json

        from plugin import log

        buckets: dict[str, float] = {}
        for bucket, seconds in _buckets:
            buckets[bucket] = buckets.get(bucket, 0.0) + seconds * 1000
        buckets["total in process"] = total * 1000
        log.write_stderr("amd-host-device profile " + json.dumps(buckets) + "\n")
