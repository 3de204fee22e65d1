"""Ending attachments: DEL's bookkeeping, GC, and the reconcile loop the DaemonSet runs.

One rule for all three. Under the device's lock, give the NIC back; then
- restored: forget the record;
- not found anywhere (the pod's netns is gone and the NIC has not come home yet — a physical
  NIC returns from a destroyed netns asynchronously — or the pod moved, renamed and re-MAC'd
  it): keep the record, marked orphaned, for reconcile or a later ADD of that NIC to finish,
  and drop it only after `max_orphan_seconds` (default 24 h): by then it is a veth that died
  with its netns, or hardware that is gone. Nothing is forgotten on uncertainty.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from plugin import backend, device, giveback, legacy, log
from plugin.cni import Env
from plugin.config import DEFAULT_LOCK_TIMEOUT, NetConf
from plugin.errors import INVALID_CONFIG, NETWORK_COMMAND_FAILED, CniError
from plugin.policy import DEFAULT_STATE_DIR
from plugin.state import Record, StateStore

MAX_ORPHAN_SECONDS = 24 * 3600.0
VALID_KEYS = ("cni.dev/valid-attachments", "cni.dev/attachments")


def _settle(store: StateStore, record: Record, outcome: giveback.Outcome,
            max_orphan: float) -> str:
    if outcome.restored:
        store.remove(record)
        return "restored"
    if outcome.refused:
        # The NIC may be safe in its own pod: not an orphan, nothing to expire.
        log.warn(f"{record.snapshot.name} of {record.attachment} is not on the node; record "
                 "kept for a DEL with the attachment's netns, or for reconcile")
        return "kept"
    now = time.time()
    # A /proc/<pid>/ns/net path cannot be judged from another PID namespace (the reconcile
    # container's): never expire those; DEL and GC still handle them.
    expirable = not record.netns.startswith("/proc/")
    if expirable and record.orphaned_since and now - record.orphaned_since >= max_orphan:
        log.warn(f"{record.snapshot.name} of {record.attachment} has not come home in "
                 f"{max_orphan / 3600:g} h; forgetting it")
        store.remove(record)
        return "expired"
    if not record.orphaned_since:
        store.save(replace(record, orphaned_since=now))
    where = "is in neither the pod nor the node" if outcome.pod_alive else \
        "has not come back from the pod's gone netns"
    log.warn(f"{record.snapshot.name} of {record.attachment} {where}; record kept for reconcile")
    return "kept"


def release(store: StateStore, record: Record, env: Env, lock_timeout: float,
            wait: float = giveback.RETURN_WAIT_SECONDS,
            max_orphan: float = MAX_ORPHAN_SECONDS) -> str:
    with store.lock(record.device_key, lock_timeout):
        current = store.load(record.container_id, record.ifname)
        if current is None:
            return "gone"
        outcome = giveback.give_back(current, env, store.root, wait=wait)
        return _settle(store, current, outcome, max_orphan)


def release_legacy(store: StateStore, entry: legacy.LegacyEntry, env: Env, lock_timeout: float,
                   look_in_pod: bool = True) -> str:
    """A pod created by AMD's Go plugin: give its NIC back, then drop the mapping."""
    record = entry.as_record(env.container_id, env.ifname, env.netns)
    with store.lock(record.device_key, lock_timeout):
        outcome = giveback.give_back(record, env, store.root, look_in_pod=look_in_pod)
        if outcome.restored:
            with legacy.locked(store, lock_timeout):
                legacy.forget(store, entry.device_id)
            return "restored"
    return "kept"


def _env_for(record: Record, cni_path: Sequence[str]) -> Env:
    return Env("DEL", record.container_id, "", record.ifname, {}, tuple(cni_path))


def _sweep(store: StateStore, records: Iterable[Record], cni_path: Sequence[str],
           lock_timeout: float, max_orphan: float) -> list[str]:
    errors = []
    for record in records:
        try:
            what = release(store, record, _env_for(record, cni_path), lock_timeout, wait=0,
                           max_orphan=max_orphan)
            log.event(f"{record.attachment} ({record.device_key}): {what}")
        except Exception as e:  # one bad attachment must not stop the others
            errors.append(f"{record.attachment}: {e}")
            log.error(f"{record.attachment}: {e}")
    for entry in legacy.entries(store.root):
        # Legacy entries name no pod: only a NIC already home is known to be released, and
        # only sysfs proves that the link of its name is the NIC (never `lo`, a bridge...).
        # An entry keyed by a name, not a PCI address, has nothing that proves it: never swept.
        if not _legacy_nic_home(entry):
            continue
        try:
            env = Env("DEL", "legacy", "", entry.host_ifname, {}, tuple(cni_path))
            what = release_legacy(store, entry, env, lock_timeout, look_in_pod=False)
            log.event(f"legacy mapping {entry.device_id} ({entry.host_ifname}): {what}")
        except Exception as e:
            errors.append(f"legacy {entry.device_id}: {e}")
            log.error(f"legacy {entry.device_id}: {e}")
    return errors


def _legacy_nic_home(entry: legacy.LegacyEntry) -> bool:
    try:
        address = device.normalize_pci(entry.device_id)
    except CniError:
        log.event(f"legacy mapping {entry.device_id!r} names no PCI address: left alone")
        return False
    if not device.belongs_to(entry.host_ifname, address):
        return False
    return backend.link_exists(entry.host_ifname)


def valid_attachments(raw: Mapping[str, Any]) -> set[tuple[str, str]]:
    key = next((k for k in VALID_KEYS if k in raw), None)
    if key is None:
        raise CniError(INVALID_CONFIG, f"GC needs {VALID_KEYS[0]}")
    items = raw[key]
    if not isinstance(items, list) or not all(
            isinstance(i, dict) and isinstance(i.get("containerID"), str)
            and isinstance(i.get("ifname"), str) for i in items):
        raise CniError(INVALID_CONFIG, f"invalid {key}: must be a list of "
                       "{{containerID, ifname}} objects")
    return {(i["containerID"], i["ifname"]) for i in items}


def gc_candidates(records: Iterable[Record], network: str,
                  valid: set[tuple[str, str]]) -> tuple[list[Record], list[Record]]:
    """Pure: (released, left alone). The runtime's list is the valid attachments *of this
    network*: a record of another network, or of none recorded (older records), is not GC's
    to judge; reconcile still releases it when its pod is gone."""
    released: list[Record] = []
    other: list[Record] = []
    for r in records:
        if r.network != network:
            other.append(r)
        elif (r.container_id, r.ifname) not in valid:
            released.append(r)
    return released, other


def gc(env: Env, conf: NetConf, raw: Mapping[str, Any]) -> None:
    """CNI 1.1 GC: restore and forget every attachment of this network the runtime no longer
    knows."""
    valid = valid_attachments(raw)
    store = StateStore(conf.state_dir)
    stale, other = gc_candidates(store.records(), conf.name, valid)
    for r in other:
        log.event(f"GC of {conf.name!r} leaves {r.attachment} alone: its network is "
                  f"{r.network or 'not recorded'}")
    errors = _sweep(store, stale, env.path, conf.lock_timeout, MAX_ORPHAN_SECONDS)
    if errors:
        raise CniError(NETWORK_COMMAND_FAILED, f"GC finished with {len(errors)} errors",
                       "; ".join(errors)[:1000])


def reconcile_once(state_dir: str, cni_path: Sequence[str], max_orphan: float,
                   lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> list[str]:
    """Release attachments whose pod netns no longer exists (pods that died without a DEL,
    or a node reboot); live pods are left alone."""
    store = StateStore(state_dir)
    orphans = [r for r in store.records() if not r.netns_alive()]
    return _sweep(store, orphans, cni_path, lock_timeout, max_orphan)


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
            args.state_dir = policy.load().state_dir
        except CniError as e:
            log.error(e.msg)
            return 1
    path = [d for d in args.cni_path.split(":") if d]
    while True:
        try:
            errors = reconcile_once(args.state_dir, path, args.max_orphan_hours * 3600)
        except Exception as e:  # a loop that dies helps no one; the next pass may succeed
            log.error(f"reconcile pass failed: {e}")
            errors = [str(e)]
        if args.interval <= 0:
            return 1 if errors else 0
        sys.stderr.flush()
        time.sleep(args.interval)
