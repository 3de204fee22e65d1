"""Giving a NIC back to the node, wherever an attachment left it, with the configuration it had.

Used by DEL, by ADD's rollback and by the clean-up of stale records, so one path decides where
the NIC is: in the pod under CNI_IFNAME, in the pod under another name (renamed, or host-device
failed half-way), or already on the node (ADD crashed before the move, or the pod's netns died
and the kernel sent it home under its pod-side name).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from plugin import backend, delegate, log
from plugin.cni import Env, valid_ifname
from plugin.errors import NETWORK_COMMAND_FAILED, CniError
from plugin.state import Record

RETURN_WAIT_SECONDS = 2.0


@dataclass(frozen=True)
class Link:
    """A link found by name or MAC, in the pod or on the node."""

    name: str
    mac: str


def _as_link(obj: Mapping[str, Any]) -> Link:
    return Link(str(obj.get("ifname", "")), str(obj.get("address", "")).lower())


def _pick(links: Sequence[Mapping[str, Any]], names: Sequence[str], mac: str,
          name_is_proof: bool = False) -> Link | None:
    """By name (with the right MAC unless the name alone proves it), else by MAC alone; a MAC
    shared by several links that carry none of the names is ambiguous: nothing is picked."""
    mac = mac.lower()
    found = [_as_link(x) for x in links]
    for name in names:
        for link in found:
            if link.name == name and (name_is_proof or not mac or link.mac == mac):
                return link
    by_mac = [link for link in found if mac and link.mac == mac]
    if len(by_mac) == 1:
        return by_mac[0]
    if by_mac:
        log.warn(f"MAC {mac} is on several links {[x.name for x in by_mac]}; not guessing")
    return None


def _pod_link(netns: str, record: Record) -> Link | None:
    try:
        links = backend.ip_json(["link show"], netns=netns)[0]
    except backend.CommandFailed as e:
        # Not knowing is not "not there": fail, and let the runtime retry.
        raise CniError(NETWORK_COMMAND_FAILED, f"cannot look into the pod's netns {netns}",
                       str(e)) from None
    # CNI_IFNAME in the pod is ours whatever its MAC (the pod may have changed it). Under the
    # node's name it is ours if the MAC says so (host-device failed half-way), or if we know
    # no MAC (records from AMD's Go plugin, whose older releases kept the node's name).
    mine = _pick(links, [record.ifname], record.snapshot.mac, name_is_proof=True)
    if mine is None and record.snapshot.name != record.ifname:
        mine = _pick(links, [record.snapshot.name], record.snapshot.mac,
                     name_is_proof=not record.snapshot.mac)
    return mine


def _node_link(record: Record, mac: str) -> Link | None:
    name = record.snapshot.name
    try:
        found = backend.ip_json([f"link show dev {name}"])[0]
        if found and (not mac or str(found[0].get("address", "")).lower() == mac.lower()):
            return _as_link(found[0])
    except backend.CommandFailed as e:
        if not e.missing_device:
            raise
    if not mac:
        return None
    return _pick(backend.ip_json(["link show"])[0], [name, record.ifname], mac)


def _wait_on_node(record: Record, mac: str, seconds: float) -> Link | None:
    """Look for the NIC on the node; a physical NIC leaves a destroyed netns asynchronously,
    so `seconds` > 0 waits for it, bounded."""
    deadline = time.monotonic() + seconds
    while True:
        link = _node_link(record, mac)
        if link or time.monotonic() >= deadline:
            return link
        time.sleep(0.1)


@dataclass(frozen=True)
class Outcome:
    """Whether the NIC was restored, and whether its pod netns still exists."""

    restored: bool
    pod_alive: bool


def pod_netns(record: Record, env_netns: str) -> str:
    """The runtime's CNI_NETNS is authoritative; the recorded path only while it is still the
    same namespace."""
    if env_netns:
        return env_netns if os.path.exists(env_netns) else ""
    return record.netns if record.netns_alive() else ""


def give_back(record: Record, env: Env, state_dir: str, wait: float = RETURN_WAIT_SECONDS,
              look_in_pod: bool = True) -> Outcome:
    """Bring the NIC to the node and restore it. Not restored if it is nowhere to be found
    (a veth destroyed with its netns, or a NIC the kernel has not returned yet).

    look_in_pod=False when the caller already found the NIC on the node: then an interface
    that happens to carry CNI_IFNAME in the pod is not ours to take."""
    netns = pod_netns(record, env.netns) if look_in_pod else ""
    mac = record.snapshot.mac
    if netns:
        in_pod = _pod_link(netns, record)
        if in_pod:
            hd = delegate.locate(env.path, state_dir)
            conf = {"cniVersion": hd.pick_version("1.0.0"), "name": "amd-host-device",
                    "type": "host-device", "device": record.snapshot.name}
            delegate.run(hd, "DEL", env, in_pod.name, netns, conf)
            log.event(f"host-device returned {in_pod.name} from {netns}")
            mac = in_pod.mac
            # host-device renamed it back from its alias: no need to look it up again.
            restore(record, Link(record.snapshot.name, mac), fallback=True)
            return Outcome(True, True)
    # Only a NIC whose pod netns is gone may still be on its way home.
    gone = look_in_pod and not netns
    link = _wait_on_node(record, mac, wait if gone else 0)
    if link is None:
        return Outcome(False, bool(netns))
    restore(record, link)
    return Outcome(True, bool(netns))


def _apply(record: Record, link: Link) -> list[backend.BatchFailure]:
    """The restore batch; a name or MAC that cannot go into a batch line (the pod may have
    chosen it) is refused, never sent."""
    if not valid_ifname(link.name):
        # A name the pod chose that no batch line may carry (a NIC renamed in the pod and
        # sent home by the kernel): rename it with argv words, which ip never re-parses.
        log.warn(f"{link.name!r} cannot go into an ip -batch line; renaming it first")
        try:
            backend.run(["ip", "link", "set", "dev", link.name, "down"])
            backend.run(["ip", "link", "set", "dev", link.name, "name", record.snapshot.name])
        except backend.CommandFailed as e:
            raise CniError(NETWORK_COMMAND_FAILED, f"cannot rename {link.name!r} back to "
                           f"{record.snapshot.name}", str(e)) from None
        link = Link(record.snapshot.name, link.mac)
    try:
        return backend.ip_batch(record.snapshot.restore_lines(link.name, link.mac))
    except ValueError as e:  # validate.Corrupt, backend.UnsafeLine
        raise CniError(NETWORK_COMMAND_FAILED, f"cannot restore {record.snapshot.name}: {e}",
                       f"record {record.attachment}") from None


def restore(record: Record, link: Link, fallback: bool = False) -> None:
    """One `ip -force -batch`: every step is tried; a failed rename is fatal, others logged.
    fallback: `link` is where the NIC should be; if it is not, find it by MAC and retry."""
    snap = record.snapshot
    failures = _apply(record, link)
    if fallback and failures and failures[0].missing_device:
        found = _node_link(record, link.mac)
        if found is None:
            raise CniError(NETWORK_COMMAND_FAILED, f"{snap.name} is not on the node after "
                           "host-device gave it back")
        failures = _apply(record, found)
    for f in failures:
        log.error(f"restore step failed: {f.line!r}: {f.message}")
    if any(" name " in f.line for f in failures if f.line.startswith("link set")):
        raise CniError(NETWORK_COMMAND_FAILED, f"cannot rename {link.name} back to {snap.name}",
                       "; ".join(f.message for f in failures))
    log.event(f"restored {snap.name}: {len(snap.addresses)} addresses, mtu {snap.mtu or 'kept'}, "
              f"{'up' if snap.up else 'down'}"
              + (f", {len(failures)} steps failed" if failures else ""))
