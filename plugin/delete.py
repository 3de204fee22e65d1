"""DEL: give the NIC back to the node with the configuration it had, and forget the record.

One act, "give back", read top-down in three modules:
    delete(node, env, conf)         the attachment's record (or the Go plugin's mapping, read
                                    as one: plugin/legacy.py)
    give_back(node, store, record)  under the device's lock: giveback.give_back, then
                                    _keep_or_forget (the pure decision is `verdict`)
    giveback.give_back              find the NIC (identity.py), host-device DEL, then
    giveback.restore                the ip -batch lines (snapshot.restore_lines) on the node
GC (plugin/gc.py) and reconcile (plugin/reconcile.py) give back through `give_back_all`, so one
rule holds for all three. Under the device's lock, give the NIC back; then
- restored: forget the record;
- not found anywhere (the pod's netns is gone and the NIC has not come home yet — a physical
  NIC returns from a destroyed netns asynchronously — or the pod moved, renamed and re-MAC'd
  it): keep the record, marked orphaned, for reconcile or a later ADD of that NIC to finish,
  and drop it only after `max_orphan_seconds` (default 24 h): by then it is a veth that died
  with its netns, or hardware that is gone. Nothing is forgotten on uncertainty.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from plugin import backend, device, devinfo, giveback, identity, legacy, log
from plugin.cni import Env
from plugin.config import NetConf
from plugin.errors import NETWORK_COMMAND_FAILED, TRY_AGAIN_LATER, CniError
from plugin.netns import is_net as is_netns
from plugin.state import Record, StateStore

MAX_ORPHAN_SECONDS = 24 * 3600.0


class Released(enum.Enum):
    """What became of one attachment's record."""

    RESTORED = "restored"  # the NIC is home with its configuration; the record is gone
    KEPT = "kept"          # the NIC was not found or not proven: the record stays for later
    EXPIRED = "expired"    # an orphan past MAX_ORPHAN_SECONDS: forgotten
    GONE = "gone"          # a concurrent DEL had already released it


def delete(node: backend.Node, env: Env, conf: NetConf) -> None:
    store = StateStore(conf.state_dir)
    # A pod from before the upgrade has the Go plugin's mapping instead: read as a record.
    record = store.load(env.container_id, env.ifname) or \
        legacy.attachment(conf.state_dir, conf.device_id, env.container_id, env.ifname, env.netns)
    if record is None:
        _check_nothing_is_there(node, env, conf)
        log.event("nothing recorded for this attachment; nothing to give back")
        return
    log.bind(device=record.device_key, netdev=record.snapshot.name)
    what = give_back(node, store, record, env, conf.lock_timeout)
    if legacy.is_mapping(record):
        log.event(f"pod from before the upgrade (AMD Go plugin mapping): {what.value}")
    devinfo.remove(record.device_info)  # the attachment ends, wherever its NIC is
    if what is Released.GONE:
        log.event("a concurrent DEL already gave the NIC back")


def nic_in_pod(links: Sequence[Mapping[str, Any]], pci: str, ifname: str) -> bool:
    """Pure: whether `ip -d -j link show` of the pod has the PCI function `pci` as `ifname`
    (proof by the PCI parent the kernel reports, which a pod cannot forge)."""
    return any(x.get("ifname") == ifname and identity.parent_pci(x) == pci for x in links)


def _check_nothing_is_there(node: backend.Node, env: Env, conf: NetConf) -> None:
    """No record is success (DEL is idempotent: the NIC is home, the pod's netns is gone, or
    ADD failed before the move), unless the attachment's NIC is right there in the pod as
    CNI_IFNAME: then its record is where this process is not looking (another root's state
    dir: Multus thick without chrootDir, a changed stateDir), and success would strand the
    NIC in the pod for good. Code 11: the runtime retries a failed DEL, never a success."""
    try:
        pci = device.normalize_pci(conf.device_id) if conf.device_id else ""
    except CniError:
        pci = ""
    if not (pci and env.netns and env.ifname and is_netns(env.netns)):
        return
    try:
        links = backend.ip_json(node, [f"link show dev {env.ifname}"], netns=env.netns,
                                details=True)[0]
    except backend.CommandFailed as e:
        if e.missing_device:
            return
        raise CniError(NETWORK_COMMAND_FAILED, f"cannot look into the pod's netns {env.netns}",
                       str(e)) from None
    if nic_in_pod(links, pci, env.ifname):
        raise CniError(TRY_AGAIN_LATER,
                       f"nothing recorded for this attachment in {conf.state_dir}, but its NIC "
                       f"{pci} is in the pod as {env.ifname}: its record is somewhere else",
                       f"looked in {conf.state_dir}; the record is in the node's state dir: run "
                       "DEL in the node's root (Multus thick: chrootDir, or privileged with "
                       "hostPID) with the node's policy (its stateDir)")


def give_back(node: backend.Node, store: StateStore, record: Record, env: Env, lock_timeout: float,
            wait: float = giveback.RETURN_WAIT_SECONDS,
            max_orphan: float = MAX_ORPHAN_SECONDS) -> Released:
    with store.lock(record.device_key, lock_timeout):
        # (A Go plugin mapping has no file of ours to read again: it is the record.)
        current = record if legacy.is_mapping(record) else \
            store.load(record.container_id, record.ifname)
        if current is None:
            return Released.GONE
        outcome = giveback.give_back(node, current, env, store.root, wait=wait)
        return _keep_or_forget(store, current, outcome, max_orphan, lock_timeout)


def verdict(record: Record, outcome: giveback.Outcome, now: float,
            max_orphan: float) -> Released:
    """Pure: what becomes of a record after a give-back attempt. Nothing is forgotten on
    uncertainty: only a restored NIC, or an orphan past `max_orphan`, ends a record."""
    if outcome.restored:
        return Released.RESTORED
    if outcome.refused:
        return Released.KEPT  # the NIC may be safe in its own pod: not an orphan
    # A /proc/<pid>/ns/net path cannot be judged from another PID namespace (the reconcile
    # container's): never expire those; DEL and GC still handle them.
    expirable = not record.netns.startswith("/proc/")
    if expirable and record.orphaned_since and now - record.orphaned_since >= max_orphan:
        return Released.EXPIRED
    return Released.KEPT


def _keep_or_forget(store: StateStore, record: Record, outcome: giveback.Outcome,
            max_orphan: float, lock_timeout: float) -> Released:
    now = time.time()
    what = verdict(record, outcome, now, max_orphan)
    if legacy.is_mapping(record):
        # The Go plugin's mapping is dropped once its NIC is home; else it stays as it was
        # (never rewritten in our format, never expired).
        if what is Released.RESTORED:
            legacy.drop(store, record, lock_timeout)
            return what
        return Released.KEPT
    if what is Released.RESTORED:
        store.remove(record)
        devinfo.remove(record.device_info)
        return what
    if outcome.refused:
        log.warn(f"{record.snapshot.name} of {record.attachment} is not on the node; record "
                 "kept for a DEL with the attachment's netns, or for reconcile")
        return what
    if what is Released.EXPIRED:
        log.warn(f"{record.snapshot.name} of {record.attachment} has not come home in "
                 f"{max_orphan / 3600:g} h; forgetting it")
        store.remove(record)
        devinfo.remove(record.device_info)
        return Released.EXPIRED
    if not record.orphaned_since:
        store.save(record._replace(orphaned_since=now))
    where = "is in neither the pod nor the node" if outcome.pod_alive else \
        "has not come back from the pod's gone netns"
    log.warn(f"{record.snapshot.name} of {record.attachment} {where}; record kept for reconcile")
    return Released.KEPT


def _env_for(record: Record, cni_path: Sequence[str]) -> Env:
    return Env("DEL", record.container_id, "", record.ifname, {}, tuple(cni_path))


def give_back_all(node: backend.Node, store: StateStore, records: Iterable[Record], cni_path: Sequence[str],
           lock_timeout: float, max_orphan: float) -> list[str]:
    errors = []
    # Go plugin mappings name no pod: only those whose NIC is home (legacy.py) are swept.
    for record in [*records, *legacy.home_records(node, store.root)]:
        try:
            what = give_back(node, store, record, _env_for(record, cni_path), lock_timeout, wait=0,
                           max_orphan=max_orphan)
            log.event(f"{record.attachment} ({record.device_key}): {what.value}")
        except Exception as e:  # one bad attachment must not stop the others
            errors.append(f"{record.attachment}: {e}")
            log.error(f"{record.attachment}: {e}")
    return errors
