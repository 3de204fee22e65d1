"""The command handlers: ADD, DEL, CHECK and STATUS.

ADD records the NIC's configuration before host-device moves it and rolls back on any failure;
DEL gives the NIC back with that configuration. A device's lock is held from the first look at
the NIC to the last write of its record.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from plugin import backend, delegate, device, giveback, legacy, log, release, routes
from plugin.cni import Env, version_key
from plugin.config import NetConf
from plugin.errors import (
    CHECK_FAILED,
    DEVICE_IN_USE,
    INCOMPATIBLE_VERSION,
    INVALID_CONFIG,
    INVALID_ENV,
    NETWORK_COMMAND_FAILED,
    NOT_AVAILABLE,
    CniError,
)
from plugin.netinfo import LinkSnapshot, parse_snapshot
from plugin.result import Result, parse_result
from plugin.state import PHASE_ATTACHED, PHASE_MOVING, Record, StateStore, netns_identity

DEFAULT_ROUTE_OPT_OUT = "allowDefaultRouteDevice"


def capture(netdev: str) -> LinkSnapshot:
    """Everything a faithful restore needs, in one `ip -batch`."""
    try:
        addr, routes = backend.ip_json([f"address show dev {netdev}",
                                        f"route show table all dev {netdev}"],
                                       missing_is_transient=True)
    except backend.CommandFailed as e:
        raise CniError(NETWORK_COMMAND_FAILED, f"cannot read {netdev}", str(e)) from None
    if not addr:
        raise CniError(NETWORK_COMMAND_FAILED, f"cannot read {netdev}: no such link")
    return parse_snapshot(addr, routes)


def _delegate_conf(conf: NetConf, version: str, netdev: str,
                   snapshot: LinkSnapshot) -> dict[str, Any]:
    out: dict[str, Any] = {"cniVersion": version, "name": conf.name, "type": "host-device",
                           "device": netdev}
    if conf.ipam is not None:
        out["ipam"] = dict(conf.ipam)  # the NAD chose its own IPAM
    elif snapshot.addresses:
        out["ipam"] = {"type": "static",
                       "addresses": [{"address": a.cidr} for a in snapshot.addresses]}
        if conf.injections:
            injected, skipped = routes.derive(snapshot.addresses, conf.injections)
            for why in skipped:
                log.warn(f"no injected route for {why}")
            if injected:
                out["ipam"]["routes"] = [{"dst": r.dst, "gw": r.gw} for r in injected]
                log.event("injecting routes " + ", ".join(f"{r.dst} via {r.gw}" for r in injected))
    return out


def _require_free_ifname(env: Env) -> None:
    try:
        taken = backend.link_exists(env.ifname, netns=env.netns)
    except backend.CommandFailed as e:
        raise CniError(NETWORK_COMMAND_FAILED, f"cannot look into {env.netns}", str(e)) from None
    if taken:
        raise CniError(INVALID_ENV, f"CNI_IFNAME: {env.ifname!r} already exists in the pod",
                       env.netns)


def _settle_stale(store: StateStore, dev: device.Device, env: Env, conf: NetConf) -> str:
    """Records that claim a NIC we just found on the node are stale (a crash before the move,
    or a pod whose netns died and sent the NIC home): restore from them and drop them.
    Returns the NIC's name now (restoring renames it back)."""
    netdev = dev.netdev
    stale = {r.attachment: r for r in (store.holder_of(dev.key),
                                       store.load(env.container_id, env.ifname)) if r}
    for record in stale.values():
        if record.device_key != dev.key:
            raise CniError(DEVICE_IN_USE, f"attachment {record.container_id}/{record.ifname} "
                           f"already holds {record.device_key}",
                           "DEL it before adding it again")
        log.event(f"stale record {record.attachment} for a NIC on the node: restoring it")
        if giveback.give_back(record, env, conf.state_dir, wait=0, look_in_pod=False).restored:
            store.remove(record)
            netdev = record.snapshot.name
        else:
            raise CniError(DEVICE_IN_USE, f"{dev.key} is held by {record.attachment}",
                           "its NIC is not on the node")
    return netdev


def _settle_legacy(store: StateStore, dev: device.Device, env: Env, conf: NetConf) -> str:
    """A mapping from AMD's Go plugin for a NIC that is on the node: its pod is gone; give the
    node back the addresses the Go plugin saved before we record the NIC afresh.
    Returns the NIC's name now."""
    if not dev.pci_address or not legacy.present(conf.state_dir):
        return dev.netdev
    entry = legacy.find(conf.state_dir, conf.device_id) or legacy.find(conf.state_dir, dev.key)
    if entry is None:
        return dev.netdev
    record = entry.as_record(env.container_id, env.ifname, "")
    giveback.restore(record, giveback.Link(dev.netdev, ""))
    with legacy.locked(store, conf.lock_timeout):
        legacy.forget(store, entry.device_id)
    log.event(f"restored {entry.host_ifname} from the Go plugin's mapping before moving it")
    return entry.host_ifname


def add(env: Env, conf: NetConf) -> Result:
    dev = device.resolve(conf.device_id, conf.device)
    log.bind(device=dev.key, netdev=dev.netdev)
    for warning in conf.warnings:
        log.warn(warning)
    store = StateStore(conf.state_dir)
    with store.lock(dev.key, conf.lock_timeout):
        if (store.holder_of(dev.key) or store.load(env.container_id, env.ifname)):
            if dev.pci_address == "" and not backend.link_exists(dev.netdev):
                holder = store.holder_of(dev.key)
                raise CniError(DEVICE_IN_USE, f"device {dev.netdev} is attached to "
                               f"{holder.attachment if holder else 'another pod'}")
            dev = replace(dev, netdev=_settle_stale(store, dev, env, conf))
        dev = replace(dev, netdev=_settle_legacy(store, dev, env, conf))
        snapshot = capture(dev.netdev)
        if snapshot.carries_default_route and not conf.allow_default_route:
            raise CniError(INVALID_CONFIG, f"refusing to move {dev.netdev}: it carries the "
                           "node's default route (moving it would cut the node off)",
                           f"set \"{DEFAULT_ROUTE_OPT_OUT}\": true in the NAD to allow it")
        _require_free_ifname(env)
        hd = delegate.locate(env.path, conf.state_dir)
        record = Record(env.container_id, env.ifname, dev.key, dev.pci_address, env.netns,
                        PHASE_MOVING, snapshot, None, time.time(), netns_identity(env.netns))
        store.save(record)
        log.event(f"recorded {snapshot.name} ({len(snapshot.addresses)} addresses, mtu "
                  f"{snapshot.mtu}, {'up' if snapshot.up else 'down'}); moving it to the pod")
        try:
            version = hd.pick_version(conf.cni_version)
            raw = delegate.run(hd, "ADD", env, env.ifname, env.netns,
                               _delegate_conf(conf, version, dev.netdev, snapshot))
            result = _shape(parse_result(raw, f"{delegate.PLUGIN} result"), env, snapshot, dev)
            store.save(record.advanced(PHASE_ATTACHED, result.to_dict("1.1.0")))
        except BaseException as e:
            log.error(f"ADD failed ({e!s:.200}); rolling back")
            _rollback(store, record, env, conf)
            raise
    log.event(f"attached {snapshot.name} as {env.ifname}")
    return result


def _shape(result: Result, env: Env, snapshot: LinkSnapshot, dev: device.Device) -> Result:
    """Our interface as the caller should see it; 1.1.0 readers also get mtu and pciID."""
    index = next((n for n, i in enumerate(result.interfaces) if i.name == env.ifname), None)
    if index is None:
        raise CniError(NETWORK_COMMAND_FAILED, f"{delegate.PLUGIN} result has no interface "
                       f"{env.ifname!r}")
    return result.with_interface(index, sandbox=env.netns, mtu=snapshot.mtu,
                                 mac=result.interfaces[index].mac or snapshot.mac,
                                 pci_id=dev.pci_address)


def _rollback(store: StateStore, record: Record, env: Env, conf: NetConf) -> None:
    try:
        if giveback.give_back(record, env, conf.state_dir).restored:
            store.remove(record)
            log.event("rolled back: NIC restored on the node")
        else:
            log.error("rollback could not find the NIC; record kept for DEL")
    except Exception as e:
        log.error(f"rollback failed ({e}); record kept for DEL")


def delete(env: Env, conf: NetConf) -> None:
    store = StateStore(conf.state_dir)
    record = store.load(env.container_id, env.ifname)
    if record is None:
        entry = legacy.find(conf.state_dir, conf.device_id)
        if entry is None:
            log.event("nothing recorded for this attachment; nothing to give back")
            return
        log.bind(device=entry.device_id, netdev=entry.host_ifname)
        what = release.release_legacy(store, entry, env, conf.lock_timeout)
        log.event(f"pod from before the upgrade (AMD Go plugin mapping): {what}")
        return
    log.bind(device=record.device_key, netdev=record.snapshot.name)
    what = release.release(store, record, env, conf.lock_timeout)
    if what == "gone":
        log.event("a concurrent DEL already gave the NIC back")


def check(env: Env, conf: NetConf) -> None:
    if version_key(conf.cni_version) < (0, 4, 0):
        raise CniError(INCOMPATIBLE_VERSION, f"CHECK needs cniVersion >= 0.4.0, got "
                       f"{conf.cni_version}")
    if conf.prev_result is None:
        raise CniError(INVALID_CONFIG, "CHECK needs prevResult")
    prev = parse_result(conf.prev_result, "prevResult")
    ours = [n for n, i in enumerate(prev.interfaces) if i.name == env.ifname
            and (not i.sandbox or i.sandbox == env.netns)]
    if not ours:
        raise CniError(CHECK_FAILED, f"prevResult has no interface {env.ifname!r} in the pod")
    store = StateStore(conf.state_dir)
    record = store.load(env.container_id, env.ifname)
    if record is None or record.phase != PHASE_ATTACHED:
        raise CniError(CHECK_FAILED, f"no completed attachment recorded for {env.attachment}")
    try:
        found = backend.ip_json([f"address show dev {env.ifname}"], netns=env.netns)[0]
    except backend.CommandFailed as e:
        raise CniError(CHECK_FAILED, f"{env.ifname} is not in the pod", str(e)) from None
    have = {f"{a.get('local')}/{a.get('prefixlen')}" for a in found[0].get("addr_info", [])}
    missing = [ip.address for ip in prev.ips
               if (ip.interface is None or ip.interface in ours) and ip.address not in have]
    if missing:
        raise CniError(CHECK_FAILED, f"{env.ifname} lacks addresses {', '.join(missing)}")
    want_mac = prev.interfaces[ours[0]].mac
    if want_mac and str(found[0].get("address", "")).lower() != want_mac.lower():
        raise CniError(CHECK_FAILED, f"{env.ifname} has MAC {found[0].get('address')}, "
                       f"expected {want_mac}")


def status(env: Env, conf: Mapping[str, Any]) -> None:
    """Can ADD be served: delegate present, state dir writable, iproute2 present."""
    state_dir = conf.get("stateDir") if isinstance(conf.get("stateDir"), str) else None
    state_dir = state_dir or "/var/lib/cni/amd-host-device"
    delegate.find(env.path)
    try:
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        probe = os.path.join(state_dir, f".status.{os.getpid()}")
        with open(probe, "w"):
            pass
        os.unlink(probe)
    except OSError as e:
        raise CniError(NOT_AVAILABLE, f"state dir {state_dir} is not writable: "
                       f"{e.strerror}") from None
    try:
        backend.run(["ip", "-V"])
    except backend.CommandFailed as e:
        raise CniError(NOT_AVAILABLE, "iproute2 `ip` is not usable", str(e)) from None
