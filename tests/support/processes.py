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


def children(parent):
    """The live children of `parent` (zombies left out)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := process_stat(int(entry))) is not None and st[1] == parent:
            out.append(int(entry))
    return out


def steady_only_child(parent, other_than=(), limit=20.0, steady=0.5):
    """`parent`'s only child, once the same one (none of `other_than`) has been its only child
    for `steady` seconds. The daemon's spare serves the ping `start_daemon` waits for and then
    exits, so the one child seen right after a request may be that one on its way out."""
    deadline = time.monotonic() + limit
    seen, since = None, 0.0
    while True:
        kids = children(parent)
        now = time.monotonic()
        if len(kids) == 1 and kids[0] not in other_than:
            if kids[0] != seen:
                seen, since = kids[0], now
            elif now - since >= steady:
                return seen
        else:
            seen = None
        assert now < deadline, f"children of {parent}: {kids}"
        time.sleep(0.02)
