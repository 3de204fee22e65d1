"""ADD: record the NIC's configuration, then let host-device move it into the pod.

The record is on disk before the NIC leaves the node, and any failure after that rolls back,
so there is no moment at which a crash loses the node's configuration. The device's lock is
held from the first look at the NIC to the last write of its record.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

from plugin import NEWEST_CNI_VERSION, backend, dad, delegate, device, identity, log, uplink
from plugin.cni import Env
from plugin.config import NetConf
from plugin.errors import (
    DEVICE_IN_USE,
    INVALID_CONFIG,
    INVALID_ENV,
    IO_FAILURE,
    NETWORK_COMMAND_FAILED,
    TRY_AGAIN_LATER,
    CniError,
)
from plugin.result import Result, parse_result
from plugin.snapshot import LinkSnapshot, parse_snapshot
from plugin.state import (
    LEGACY_FILE_NAME,
    PHASE_ATTACHED,
    PHASE_MOVING,
    Record,
    StateStore,
    displayable,
    netns_identity,
)

DEFAULT_ROUTE_OPT_OUT = "allowDefaultRouteDevice"
PORT_OPT_IN = "allowPortDevices"


class NodeView(NamedTuple):
    """What ADD reads on the node before the move: the NIC's state and the node's links and
    default routes (for the uplink guard)."""

    snapshot: LinkSnapshot
    links: list[dict[str, Any]]
    defaults: list[dict[str, Any]]
    unproven: tuple[str, ...] = ()  # IPv6 addresses DAD had not proven on the node (dad.py)


def capture(node: backend.Node, netdev: str) -> NodeView:
    """Everything a faithful restore needs, and what the uplink guard needs, in one
    `ip -d -N -batch` (numbers, not /etc/iproute2 names)."""
    try:
        addr, routes, links, defaults = backend.ip_json(node,
            [f"address show dev {netdev}", f"route show table all dev {netdev}", *uplink.READS],
            missing_is_transient=True, numeric=True, details=True)
    except backend.CommandFailed as e:
        raise CniError(NETWORK_COMMAND_FAILED, f"cannot read {netdev}", str(e)) from None
    if not addr:
        raise CniError(NETWORK_COMMAND_FAILED, f"cannot read {netdev}: no such link")
    try:
        return NodeView(parse_snapshot(addr, routes), links, defaults, dad.unproven(addr))
    except ValueError as e:  # validate.Corrupt: something restore could not give back
        raise CniError(INVALID_CONFIG, f"refusing to move {netdev}: its configuration "
                       f"cannot be recorded faithfully: {e}") from None


def _with_link(netdev: str, snapshot: LinkSnapshot, link: Mapping[str, Any] | None,
               offloads: str, channels: str) -> LinkSnapshot:
    """Add the NIC's altnames and link settings, which a pod can change and which travel with
    it: from its `ip -d -j link show` object, `ethtool -k` and `ethtool -l`."""
    try:
        return snapshot.with_link(link, offloads, channels)
    except ValueError as e:  # validate.Corrupt: something restore could not give back
        raise CniError(INVALID_CONFIG, f"refusing to move {netdev}: its configuration "
                       f"cannot be recorded faithfully: {e}") from None


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
            from plugin import route_injection

            injected, skipped = route_injection.derive(snapshot.addresses, conf.injections)
            for why in skipped:
                log.warn(f"no injected route for {why}")
            if injected:
                out["ipam"]["routes"] = [{"dst": r.dst, "gw": r.gw} for r in injected]
                log.event("injecting routes " + ", ".join(f"{r.dst} via {r.gw}" for r in injected))
    return out


def _our_ipv6(conf: NetConf, snapshot: LinkSnapshot) -> list[str]:
    """The node's IPv6 addresses that static IPAM puts in the pod (none if the NAD has its
    own IPAM): ADD returns only once they are usable (plugin/dad.py)."""
    if conf.ipam is not None:
        return []
    return [a.cidr for a in snapshot.addresses if a.family == "inet6"]


def _require_free_ifname(node: backend.Node, env: Env) -> None:
    try:
        taken = backend.link_exists(node, env.ifname, netns=env.netns)
    except backend.CommandFailed as e:
        raise CniError(NETWORK_COMMAND_FAILED, f"cannot look into {env.netns}", str(e)) from None
    if taken:
        raise CniError(INVALID_ENV, f"CNI_IFNAME: {env.ifname!r} already exists in the pod",
                       env.netns)


def _give_back_stale(node: backend.Node, store: StateStore, stale: list[Record], dev: device.Device, env: Env,
                  conf: NetConf) -> str:
    """Records that claim a NIC we just found on the node are stale (a crash before the move,
    or a pod whose netns died and sent the NIC home): restore from them and drop them.
    Returns the NIC's name now (restoring renames it back)."""
    from plugin import giveback

    netdev = dev.netdev
    for record in stale:
        if record.device_key != dev.key:
            raise CniError(DEVICE_IN_USE, f"attachment {record.container_id}/{record.ifname} "
                           f"already holds {record.device_key}",
                           "DEL it before adding it again")
        log.event(f"stale record {record.attachment} for a NIC on the node: restoring it")
        if giveback.give_back(node, record, env, conf.state_dir, wait=0, look_in_pod=False).restored:
            store.remove(record)
            netdev = record.snapshot.name
        else:
            raise CniError(DEVICE_IN_USE, f"{dev.key} is held by {record.attachment}",
                           "its NIC is not on the node")
    return netdev


def _give_back_legacy(node: backend.Node, store: StateStore, dev: device.Device, env: Env,
                      conf: NetConf) -> str:
    """A mapping from AMD's Go plugin for a NIC that is on the node: its pod is gone; give the
    node back the addresses the Go plugin saved before we record the NIC afresh.
    Returns the NIC's name now."""
    if not dev.pci_address or not os.path.exists(os.path.join(conf.state_dir, LEGACY_FILE_NAME)):
        return dev.netdev
    from plugin import giveback, legacy

    record = legacy.attachment(conf.state_dir, conf.device_id, env.container_id, env.ifname, "") \
        or legacy.attachment(conf.state_dir, dev.key, env.container_id, env.ifname, "")
    if record is None:
        return dev.netdev
    giveback.restore(node, record, giveback.Link(dev.netdev, ""))
    legacy.drop(store, record, conf.lock_timeout)
    log.event(f"restored {record.snapshot.name} from the Go plugin's mapping before moving it")
    return record.snapshot.name


def _resolve(node: backend.Node, conf: NetConf, store: StateStore) -> device.Device:
    """The NIC on the node. A PCI function that lists no netdev may be one an attachment
    holds: ask the state store first, so that answer does not wait for a netdev to appear."""
    if conf.device_id:
        address = device.normalize_pci(conf.device_id)
        if not device.netdev_listed(address):
            holder = store.holder_of(address)
            if holder is not None:
                raise CniError(DEVICE_IN_USE, f"device {holder.device_key} is attached to "
                               f"{holder.container_id}/{holder.ifname}",
                               "DEL that attachment first")
    return device.resolve(node, conf.device_id, conf.device,
                          allow_non_pci=conf.policy.allow_non_pci_devices)


def _stale(store: StateStore, dev: device.Device, env: Env) -> list[Record]:
    """Records that claim this NIC, or this attachment, already."""
    found = {r.attachment: r for r in (store.holder_of(dev.key),
                                       store.load(env.container_id, env.ifname)) if r}
    return list(found.values())


def add(node: backend.Node, env: Env, conf: NetConf) -> Result:
    info_file = _device_info_file(conf)  # refused (code 7) before anything happens
    store = StateStore(conf.state_dir)
    dev = _resolve(node, conf, store)
    log.bind(device=dev.key, netdev=dev.netdev)
    for warning in conf.warnings:
        log.warn(warning)
    with store.lock(dev.key, conf.lock_timeout):
        stale = _stale(store, dev, env)
        if stale:
            if dev.pci_address == "" and not backend.link_exists(node, dev.netdev):
                holder = stale[0]
                raise CniError(DEVICE_IN_USE, f"device {dev.netdev} is attached to "
                               f"{holder.container_id}/{holder.ifname}")
            dev = dev._replace(netdev=_give_back_stale(node, store, stale, dev, env, conf))
        dev = dev._replace(netdev=_give_back_legacy(node, store, dev, env, conf))
        view = capture(node, dev.netdev)  # the NIC and the node's uplinks, one ip
        seen = _guard_uplinks(node, dev.netdev, view, conf)
        snapshot = _with_link(dev.netdev, view.snapshot, seen.link,
                              backend.ethtool_read(node, "-k", dev.netdev),
                              backend.ethtool_read(node, "-l", dev.netdev))
        _require_free_ifname(node, env)
        hd = delegate.locate(node, env.path, conf.state_dir)
        record = Record(env.container_id, env.ifname, dev.key, dev.pci_address, env.netns,
                        PHASE_MOVING, snapshot, None, time.time(), netns_identity(env.netns),
                        identity=_node_identity(node, dev.netdev, seen.link), network=conf.name,
                        pod=displayable(log.pod_of(env.args)), master=seen.master, uppers=seen.uppers)
        store.save(record)
        log.event(f"recorded {snapshot.name} ({len(snapshot.addresses)} addresses, mtu "
                  f"{snapshot.mtu}, {'up' if snapshot.up else 'down'}); moving it to the pod")
        try:
            version = hd.pick_version(conf.cni_version)
            ours = _our_ipv6(conf, snapshot)
            with _one_dad_window(store, record, bool(ours) and not view.unproven) as skip, \
                    dad.skipping(node, env.netns, env.ifname, skip) as without_dad:
                raw = delegate.run(node, hd, "ADD", env, env.ifname, env.netns,
                                   _delegate_conf(conf, version, dev.netdev, snapshot))
            if not without_dad:  # without DAD nothing is tentative: nothing to wait for
                dad.settle(node, env.netns, env.ifname, ours)
            record = _with_pod_identity(node, record, env)
            result = _shape(parse_result(raw, f"{delegate.PLUGIN} result"), env, snapshot, dev)
            record = record._replace(device_info=_write_device_info(info_file, dev))
            # Not fsync'd: if this update is lost, the record says "moving" and DEL still
            # finds the NIC in the pod; only CHECK would need the ADD again.
            store.save(record.with_phase(PHASE_ATTACHED, result.to_dict(NEWEST_CNI_VERSION)), durable=False)
        except BaseException as e:
            log.error(f"ADD failed ({e!s:.200}); rolling back")
            _rollback(node, store, record, env, conf)
            raise
    log.event(f"attached {snapshot.name} as {env.ifname}")
    return result


DAD_LOCK_STRIPES = 16
DAD_LOCK_WAIT = 0.5


@contextlib.contextmanager
def _one_dad_window(store: StateStore, record: Record, wanted: bool) -> Iterator[bool]:
    """One ADD at a time per pod turns its default accept_dad off and back (dad.skipping): two
    at once would each find the other's 0, and one NIC would wait out a DAD it did not need.
    Striped by the pod netns' inode (few lock files; other pods rarely wait). Yields whether
    this ADD may skip DAD: an ADD that cannot have the window in DAD_LOCK_WAIT (another one is
    slow inside host-device) goes on with DAD and waits for it, never for the other ADD."""
    if not wanted or not record.netns_id:
        yield False
        return
    stripe = int(record.netns_id.split(":")[1]) % DAD_LOCK_STRIPES
    window = store.lock(f"pod-dad-{stripe}", DAD_LOCK_WAIT)
    try:
        window.__enter__()
    except CniError as e:
        if e.code != TRY_AGAIN_LATER:
            raise
        log.event("another ADD into this pod holds its IPv6 DAD window: this NIC gets DAD "
                  "and ADD waits for it")
        yield False
        return
    try:
        yield True
    finally:
        window.__exit__(None, None, None)


def _guard_uplinks(node: backend.Node, netdev: str, view: NodeView, conf: NetConf) -> uplink.Assessment:
    """Refuse (code 7) to take the node's uplink, or a port/lower device, without opt-in."""
    seen = uplink.inspect(node, netdev, view.links, view.defaults)
    via = seen.default_route_via or ("the node's default route goes through it"
                                     if view.snapshot.carries_default_route else "")
    if via and not conf.allow_default_route:
        raise CniError(INVALID_CONFIG, f"refusing to move {netdev}: {via} (moving it would cut "
                       "the node off)",
                       f"set \"{DEFAULT_ROUTE_OPT_OUT}\": true in the node policy to allow it")
    if seen.breaks_others and not conf.policy.allow_port_devices:
        what = ", ".join(([f"a port of {seen.master}"] if seen.master else [])
                         + ([f"the lower device of {', '.join(seen.uppers)}"]
                            if seen.uppers else []))
        raise CniError(INVALID_CONFIG, f"refusing to move {netdev}: it is {what} (moving it "
                       "would break them)",
                       f"set \"{PORT_OPT_IN}\": true in the node policy to allow it")
    if seen.breaks_others:
        log.warn(f"moving {netdev} away from {', '.join(filter(None, (seen.master, *seen.uppers)))}"
                 " (node policy allows it); DEL makes it a port again")
    return seen


def _node_identity(node: backend.Node, netdev: str, link: Mapping[str, Any] | None) -> identity.NicIdentity:
    """What proves, later, that an interface is this NIC (plugin/identity.py)."""
    if link is None:
        return identity.NicIdentity()
    perm = backend.ethtool_perm_mac(node, netdev) if identity.wants_perm_mac(link) else ""
    return identity.of_link(link, identity.Frame.NODE, perm)


def _with_pod_identity(node: backend.Node, record: Record, env: Env) -> Record:
    """A veth NIC's peer as the pod sees it: nsids are per namespace, so DEL compares what it
    reads in the pod with what was read in the pod. Read before any workload runs there."""
    if not record.identity.peer_node:
        return record
    try:
        found = backend.ip_json(node, [f"link show dev {env.ifname}"], netns=env.netns,
                                details=True)[0]
    except backend.CommandFailed as e:
        log.warn(f"cannot read {env.ifname} in the pod ({e}); DEL will prove it by name and "
                 "peer index only while the record says moving")
        return record
    peer = identity.veth_peer(found[0]) if found else ""
    if not peer or peer.split(":")[0] != record.identity.peer_node.split(":")[0]:
        log.warn(f"{env.ifname} in the pod is not the veth that left the node ({peer or 'none'})")
        return record
    # Its pod-side ifindex: where DEL looks if the pod renames it.
    index = identity.ifindex_of(found[0]) or record.identity.ifindex
    return record._replace(identity=record.identity._replace(peer_pod=peer, ifindex=index))


def _shape(result: Result, env: Env, snapshot: LinkSnapshot, dev: device.Device) -> Result:
    """Our interface as the caller should see it; 1.1.0 readers also get mtu and pciID."""
    index = next((n for n, i in enumerate(result.interfaces) if i.name == env.ifname), None)
    if index is None:
        raise CniError(NETWORK_COMMAND_FAILED, f"{delegate.PLUGIN} result has no interface "
                       f"{env.ifname!r}")
    return result.with_interface(index, sandbox=env.netns, mtu=snapshot.mtu,
                                 mac=result.interfaces[index].mac or snapshot.mac,
                                 pci_id=dev.pci_address)


def _device_info_file(conf: NetConf) -> str:
    """Where Multus wants the NPWG device-info (runtimeConfig.CNIDeviceInfoFile): only in its
    devinfo dir (plugin/devinfo.py), else code 7; "" when not asked."""
    if conf.device_info_file in (None, ""):
        return ""
    from plugin import devinfo

    return devinfo.check_path(conf.device_info_file)


def _write_device_info(path: str, dev: device.Device) -> str:
    """The device-info for a PCI NIC; returns the path if we wrote it (DEL removes it), ""
    otherwise."""
    if not path or not dev.pci_address:
        return ""
    from plugin import devinfo

    try:
        wrote = devinfo.write(path, devinfo.info(dev.pci_address))
    except OSError as e:
        raise CniError(IO_FAILURE, f"cannot write {path}", str(e)) from None
    return path if wrote else ""


def _rollback(node: backend.Node, store: StateStore, record: Record, env: Env, conf: NetConf) -> None:
    from plugin import devinfo, giveback

    devinfo.remove(record.device_info)

    try:
        if giveback.give_back(node, record, env, conf.state_dir).restored:
            store.remove(record)
            log.event("rolled back: NIC restored on the node")
        else:
            log.error("rollback could not find the NIC; record kept for DEL")
    except Exception as e:
        log.error(f"rollback failed ({e}); record kept for DEL")
