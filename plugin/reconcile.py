"""reconcile: give back the NICs of pods that died without a DEL (or a node reboot).

Run by the daemon every pass (plugin/daemon.py), or by hand / in a loop with
`amd-host-device reconcile`. Releasing is DEL's (plugin/delete.py `give_back_all`).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence

from plugin import log
from plugin.config import DEFAULT_LOCK_TIMEOUT
from plugin.delete import MAX_ORPHAN_SECONDS, give_back_all
from plugin.errors import CniError
from plugin.node import Node, local
from plugin.policy import DEFAULT_STATE_DIR
from plugin.state import Record, StateStore


def reconcile_once(node: Node, state_dir: str, cni_path: Sequence[str], max_orphan: float,
                   lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> list[str]:
    """Release attachments whose pod netns no longer exists (pods that died without a DEL,
    or a node reboot); live pods are left alone."""
    store = StateStore(state_dir)
    return give_back_all(node, store, orphans(store.records()), cni_path, lock_timeout, max_orphan)


def orphans(records: Iterable[Record],
            alive: Callable[[Record], bool] = Record.netns_alive) -> list[Record]:
    """The records whose pod netns is gone (or is now another namespace at a reused path);
    pure given `alive`."""
    return [r for r in records if not alive(r)]


def reconcile_main(argv: Sequence[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="amd-host-device reconcile",
                                description="Give back NICs of pods that died without a DEL.")
    p.add_argument("--state-dir", default="",
                   help="default: the node policy's stateDir (or $AMD_HOST_DEVICE_STATE_DIR), "
                   f"else {DEFAULT_STATE_DIR}")
    p.add_argument("--cni-path", default=os.environ.get("CNI_PATH", ""),
                   help="where host-device is (colon list); the usual dirs are searched after")
    p.add_argument("--interval", type=float, default=0.0,
                   help="seconds between passes; 0 runs once and exits")
    p.add_argument("--max-orphan-hours", type=float, default=MAX_ORPHAN_SECONDS / 3600)
    args = p.parse_args(argv)
    log.bind(cmd="RECONCILE")
    if not args.state_dir:
        from plugin import policy

        try:
            args.state_dir = policy.load(os.environ).state_dir
        except CniError as e:
            log.error(e.msg)
            return 1
    path = [d for d in args.cni_path.split(":") if d]
    while True:
        try:
            errors = reconcile_once(local(), args.state_dir, path, args.max_orphan_hours * 3600)
        except Exception as e:  # a loop that dies helps no one; the next pass may succeed
            log.error(f"reconcile pass failed: {e}")
            errors = [str(e)]
        if args.interval <= 0:
            return 1 if errors else 0
        sys.stderr.flush()
        time.sleep(args.interval)
