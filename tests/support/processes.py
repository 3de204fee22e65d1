"""Processes a test started or watches, read from /proc: whether one is still there, waiting
for it to go, and ending the ones a test started (by PID, never by name)."""

import contextlib
import os
import signal
import time


def process_stat(pid):
    """(state, ppid, pgid) of a process, or None once it is gone (or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    if fields[0] in ("Z", "X"):
        return None
    return fields[0], int(fields[1]), int(fields[2])


def gone_within(pid, seconds):
    deadline = time.monotonic() + seconds
    while process_stat(pid) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def end_processes(*pids):
    for pid in pids:
        if pid and process_stat(pid) is not None:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
