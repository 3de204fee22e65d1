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
from plugin.cni import Env
from plugin.errors import NETWORK_COMMAND_FAILED, CniError
from plugin.state import Record

RETURN_WAIT_SECONDS = 2.0


@dataclass(frozen=True)
class Link:
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
        log.warn(f"cannot list links in {netns}: {e}")
        return None
    # CNI_IFNAME in the pod is ours whatever its MAC: the pod may have changed it.
    return _pick(links, [record.ifname], record.snapshot.mac, name_is_proof=True)


def _node_link(record: Record, mac: str) -> Link | None:
    name = record.snapshot.name
    try:
        found = backend.ip_json([f"link show dev {name}"])[0]
        if found and str(found[0].get("address", "")).lower() == mac.lower():
            return _as_link(found[0])
    except backend.CommandFailed as e:
        if not e.missing_device:
            raise
    return _pick(backend.ip_json(["link show"])[0], [name, record.ifname], mac)


def _wait_on_node(record: Record, seconds: float) -> Link | None:
    """A physical NIC leaves a destroyed netns asynchronously; wait for it, bounded."""
    deadline = time.monotonic() + seconds
    while True:
        link = _node_link(record, record.snapshot.mac)
        if link or time.monotonic() >= deadline:
            return link
        time.sleep(0.1)


def give_back(record: Record, env: Env, state_dir: str, wait: float = RETURN_WAIT_SECONDS,
              look_in_pod: bool = True) -> bool:
    """Bring the NIC to the node and restore it. False if it is nowhere to be found (a veth
    destroyed with its netns, or a NIC the kernel has not returned yet).

    look_in_pod=False when the caller already found the NIC on the node: then an interface
    that happens to carry CNI_IFNAME in the pod is not ours to take."""
    netns = env.netns or record.netns
    mac = record.snapshot.mac
    if look_in_pod and netns and os.path.exists(netns):
        in_pod = _pod_link(netns, record)
        if in_pod:
            hd = delegate.locate(env.path, state_dir)
            conf = {"cniVersion": hd.pick_version("1.0.0"), "name": "amd-host-device",
                    "type": "host-device", "device": record.snapshot.name}
            delegate.run(hd, "DEL", env, in_pod.name, netns, conf)
            log.event(f"host-device returned {in_pod.name} from {netns}")
            mac = in_pod.mac
        pod_alive = True
    else:
        pod_alive = False
    link = _node_link(record, mac) if pod_alive or not look_in_pod else _wait_on_node(record, wait)
    if link is None:
        return False
    failures = backend.ip_batch(record.snapshot.restore_lines(link.name, link.mac))
    for f in failures:
        log.error(f"restore step failed: {f.line!r}: {f.message}")
    if any(line.startswith("link set") and " name " in line for line in
           (f.line for f in failures)):
        raise CniError(NETWORK_COMMAND_FAILED, f"cannot rename {link.name} back to "
                       f"{record.snapshot.name}", "; ".join(f.message for f in failures))
    log.event(f"restored {record.snapshot.name}: {len(record.snapshot.addresses)} addresses, "
              f"mtu {record.snapshot.mtu}, {'up' if record.snapshot.up else 'down'}"
              + (f", {len(failures)} steps failed" if failures else ""))
    return True
