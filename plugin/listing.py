"""`amd-host-device list [--json]`: which pod holds which NIC on this node, which records are
orphaned, what AMD's Go plugin left behind, which records are corrupt, and which a newer
release wrote (left untouched: this release does not act on them).

Read-only by construction: the store is opened read_only (nothing created, a corrupt record is
reported where it lies instead of being set aside), and each record is re-read under a shared
hold of its device's lock, so a row never shows half of an ADD/DEL in flight; a device whose
lock stays held is listed from its last committed record and marked busy.
The JSON schema is documented in docs/operations.md; SCHEMA changes only when a field is
removed or changes meaning.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from plugin import formats, legacy, policy
from plugin.errors import CniError
from plugin.files import NotRegular
from plugin.state import LEGACY_FILE_NAME, Record, StateStore

SCHEMA = "amd-host-device/list/v1"
LOCK_WAIT_SECONDS = 1.0


def iso(ts: float) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts > 0 else None


def _attachment(store: StateStore, found: Record, now: float) -> dict[str, Any] | None:
    with store.shared_lock(found.device_key, LOCK_WAIT_SECONDS) as held:
        record = store.load(found.container_id, found.ifname) if held else found
    if record is None:  # a DEL finished between the scan and the lock
        return None
    alive = record.netns_alive()
    return {
        "pod": record.pod, "containerID": record.container_id, "ifname": record.ifname,
        "pciAddress": record.pci_address, "deviceKey": record.device_key,
        "netdev": record.snapshot.name,
        "addresses": [a.cidr for a in record.snapshot.addresses],
        "phase": record.phase,
        "created": iso(record.created),
        "ageSeconds": int(now - record.created) if record.created > 0 else None,
        "netns": record.netns, "netnsAlive": alive,
        "orphaned": bool(record.orphaned_since) or not alive,
        "orphanedSince": iso(record.orphaned_since),
        "busy": not held,
        "writtenBy": record.written_by,
    }


def _newer(e: formats.Newer) -> dict[str, Any]:
    return {"what": e.what, "formatVersion": e.version, "writtenBy": e.written_by or None,
            "reason": e.msg, "short": e.short}


def _legacy(store: StateStore, corrupt: list[dict[str, Any]]) -> list[dict[str, Any]]:
    path = os.path.join(store.root, LEGACY_FILE_NAME)
    with store.shared_lock(legacy.LOCK_KEY, LOCK_WAIT_SECONDS):
        try:
            entries, invalid = legacy.entries_checked(store.root)
        except (NotRegular, OSError, ValueError, RecursionError) as e:
            # A symlink, FIFO or oversized file is reported, never set aside: list is read-only.
            corrupt.append({"path": path, "reason": f"legacy mappings unreadable: {e}"[:200],
                            "setAside": False})
            return []
    corrupt.extend({"path": path, "reason": f"legacy entry {key[:80]!r} is not valid",
                    "setAside": False} for key in invalid)
    return [{"deviceID": e.device_id, "netdev": e.host_ifname, "addresses": list(e.addresses),
             "up": e.up} for e in entries]


def collect(state_dir: str, now: float | None = None) -> dict[str, Any]:
    """The whole listing as one JSON-able value (schema SCHEMA)."""
    now = time.time() if now is None else now
    store = StateStore(state_dir, read_only=True)
    newer: list[dict[str, Any]] = []
    try:
        rows = [row for r in store.records() if (row := _attachment(store, r, now))]
    except formats.Newer as e:  # the whole store is a newer release's layout
        rows, newer = [], [_newer(e)]
    newer += [_newer(e) for e in store.newer]
    corrupt: list[dict[str, Any]] = [{"path": p, "reason": why, "setAside": False}
                                     for p, why in store.unreadable]
    legacy_rows = _legacy(store, corrupt)
    corrupt += [{"path": p, "reason": "set aside by the plugin as unreadable", "setAside": True}
                for p in store.set_aside()]
    return {"schema": SCHEMA, "stateDir": state_dir, "generatedAt": iso(now),
            "attachments": rows, "legacy": legacy_rows, "corrupt": corrupt, "newer": newer}


# -- the table ---------------------------------------------------------------------------------
def _cell(value: object) -> str:
    from plugin.display import safe

    return safe("" if value is None else str(value)) or "-"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{max(s, 0)}s"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    cells = [list(header)] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]


def _orphan_cell(row: dict[str, Any], now: float) -> str:
    if row["orphanedSince"]:
        import calendar

        try:
            since = calendar.timegm(time.strptime(row["orphanedSince"], "%Y-%m-%dT%H:%M:%SZ"))
        except ValueError:  # past year 9999 (a record says so): no age, no traceback
            return f"since {row['orphanedSince']}"
        return f"since {row['orphanedSince']} ({_age(now - since)})"
    if not row["netnsAlive"]:
        return "pod netns gone"
    return "no"


def render(listing: dict[str, Any], now: float | None = None) -> str:
    now = time.time() if now is None else now
    out = [f"Attachments (state dir {listing['stateDir']}):"]
    if listing["attachments"]:
        out += _table(
            ("POD", "CONTAINER", "IFNAME", "PCI", "NETDEV", "ADDRESSES", "PHASE", "AGE",
             "ORPHANED", "BY"),
            [(r["pod"], r["containerID"][:12], r["ifname"], r["pciAddress"], r["netdev"],
              ",".join(r["addresses"]), r["phase"] + (" (busy)" if r["busy"] else ""),
              _age(r["ageSeconds"]), _orphan_cell(r, now), r["writtenBy"])
             for r in listing["attachments"]])
    else:
        out.append("  none")
    if listing["legacy"]:
        out += ["", f"Legacy mappings (AMD Go plugin's {LEGACY_FILE_NAME}; "
                "restored on DEL, GC or reconcile):"]
        out += _table(("LEGACY DEVICE", "NETDEV", "ADDRESSES", "STATE"),
                      [(e["deviceID"], e["netdev"], ",".join(e["addresses"]),
                        "UP" if e["up"] else "DOWN") for e in listing["legacy"]])
    if listing["newer"]:
        out += ["", "Written by a newer release (left untouched; DEL fails with code 11 until "
                "the DaemonSet runs that release again):"]
        out += _table(("RECORD", "WRITTEN BY", "FORMAT", "REASON"),
                      [(n["what"], n["writtenBy"] or "unknown", n["formatVersion"],
                        n["short"]) for n in listing["newer"]])
    if listing["corrupt"]:
        out += ["", "Corrupt or set-aside records (the plugin ignores them; inspect, then "
                "remove):"]
        out += _table(("FILE", "STATUS", "REASON"),
                      [(c["path"], "set aside" if c["setAside"] else "CORRUPT", c["reason"])
                       for c in listing["corrupt"]])
    return "\n".join(out) + "\n"


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="amd-host-device list",
                                description="Attachments, legacy mappings and corrupt records "
                                "on this node (read-only).")
    p.add_argument("--json", action="store_true", help=f"machine-readable ({SCHEMA})")
    p.add_argument("--state-dir", default="", help="default: the node policy's stateDir")
    args = p.parse_args(argv)
    state_dir = args.state_dir
    if not state_dir:
        try:
            state_dir = policy.load(os.environ).state_dir
        except CniError as e:
            sys.stderr.write(f"warning: {e.msg}; using {policy.DEFAULT_STATE_DIR}\n")
            state_dir = policy.DEFAULT_STATE_DIR
    try:
        listing = collect(state_dir)
    except (OSError, CniError) as e:
        sys.stderr.write(f"amd-host-device list: cannot read {state_dir}: "
                         f"{getattr(e, 'msg', None) or e}\n")
        return 1
    sys.stdout.write(json.dumps(listing, indent=2) + "\n" if args.json else render(listing))
    return 0
