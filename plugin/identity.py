"""Which interface is the attachment's NIC: proof by what a pod cannot forge, never by name.

A pod with NET_ADMIN can rename, re-MAC and alias its interfaces and create veths, so a name,
an alias or a MAC proves nothing. What it cannot change:
- the PCI parent the kernel reports (`ip -d` `parentbus`/`parentdev`);
- the permanent MAC of real hardware (`ethtool -P`);
- for a NIC without a PCI parent (a veth: the simulated node, kind), its peer: the peer's
  ifindex and the namespace it lives in (`link_index`, `link_netnsid`). The nsid is relative to
  the namespace one looks from, so it is recorded once per frame: from the node before the
  move, from the pod right after it, and compared only within the same frame.

Pure functions over `ip -d -j link show` objects: no commands run here (a legacy mapping's
NIC is proven by the node's sysfs, which is read).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any, NamedTuple

from plugin.values import Invalid, is_ethernet_mac, is_pci, permanent_mac

_PEER = re.compile(r"[0-9]{1,10}:(-?[0-9]{1,10})")
_IFINDEX_MAX = 2**31 - 1


def _is_peer(text: str) -> bool:
    return _PEER.fullmatch(text) is not None


class Frame(Enum):
    """The namespace an `ip` answer was read from."""

    NODE = "node"
    POD = "pod"


class NicIdentity(NamedTuple):
    """What ADD recorded about the NIC that a pod cannot forge."""

    pci: str = ""        # PCI parent as the kernel reports it
    perm_mac: str = ""   # permanent MAC of real hardware (ethtool -P)
    peer_node: str = ""  # veth peer "<ifindex>:<nsid>" seen from the node
    peer_pod: str = ""   # the same seen from the pod, read right after the move
    # AMD's Go plugin recorded nothing but a name: on the node only (never in a pod), its
    # mappings keep the old rule that the node's link of that name is the NIC when sysfs
    # lists it under the PCI function. So do records from before 0.1.0 recorded identity
    # (plugin/formats.py upgrade); stored as "legacy": true so a re-saved one keeps it.
    legacy: bool = False
    # Its ifindex (not proof: where DEL looks for it in the pod when the pod renamed it). A
    # netns move keeps a netdev's ifindex unless the target has it taken; 0: not recorded.
    ifindex: int = 0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"pci": self.pci, "permMac": self.perm_mac,
                               "peerNode": self.peer_node, "peerPod": self.peer_pod}
        if self.legacy:
            out["legacy"] = True
        if self.ifindex:
            out["ifindex"] = self.ifindex
        return out

    @classmethod
    def from_json(cls, obj: object) -> NicIdentity:
        """Validated like everything read back: a bad value is a corrupt record."""
        if obj is None:
            return cls()
        if not isinstance(obj, Mapping):
            raise Invalid("identity must be an object")
        values = {}
        for key, check in (("pci", is_pci), ("permMac", is_ethernet_mac),
                           ("peerNode", _is_peer), ("peerPod", _is_peer)):
            value = obj.get(key, "")
            if not isinstance(value, str) or (value and not check(value)):
                raise Invalid(f"identity.{key}: invalid value {str(value)[:40]!r}")
            values[key] = value
        legacy = obj.get("legacy", False)
        if not isinstance(legacy, bool):
            raise Invalid("identity.legacy: must be true or false")
        index = obj.get("ifindex", 0)
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= _IFINDEX_MAX:
            raise Invalid(f"identity.ifindex: invalid value {str(index)[:40]!r}")
        return cls(values["pci"], values["permMac"], values["peerNode"], values["peerPod"],
                   legacy, index)

    @property
    def known(self) -> bool:
        return bool(self.pci or self.perm_mac or self.peer_node or self.peer_pod)


def parent_pci(link: Mapping[str, Any]) -> str:
    """The PCI function the kernel says this netdev belongs to, or ""."""
    if link.get("parentbus") != "pci":
        return ""
    dev = str(link.get("parentdev", "")).lower()
    return dev if is_pci(dev) else ""


def kind(link: Mapping[str, Any]) -> str:
    info = link.get("linkinfo")
    return str(info.get("info_kind", "")) if isinstance(info, Mapping) else ""


def veth_peer(link: Mapping[str, Any]) -> str:
    """"<peer ifindex>:<peer nsid>" of a veth whose peer lives in another namespace, else "".
    A peer in the same namespace (what a pod can make by itself) gives nothing."""
    if kind(link) != "veth":
        return ""
    index, nsid = link.get("link_index"), link.get("link_netnsid")
    if isinstance(index, bool) or isinstance(nsid, bool):
        return ""
    if not isinstance(index, int) or not isinstance(nsid, int):
        return ""
    return f"{index}:{nsid}"


def of_link(link: Mapping[str, Any], frame: Frame, perm_mac: str = "") -> NicIdentity:
    """What to record about a NIC, seen in `frame`."""
    peer = veth_peer(link)
    return NicIdentity(pci=parent_pci(link), perm_mac=permanent_mac(perm_mac),
                       peer_node=peer if frame is Frame.NODE else "",
                       peer_pod=peer if frame is Frame.POD else "", ifindex=ifindex_of(link))


def ifindex_of(link: Mapping[str, Any]) -> int:
    """The link's ifindex as `ip -j` reported it, 0 if it is not one."""
    index = link.get("ifindex")
    ok = isinstance(index, int) and not isinstance(index, bool) and 0 < index <= _IFINDEX_MAX
    return index if ok else 0  # type: ignore[return-value]


def wants_perm_mac(link: Mapping[str, Any]) -> bool:
    """ethtool -P is worth a process only for hardware `ip` shows no PCI parent for."""
    return not parent_pci(link) and kind(link) == ""


class Evidence(NamedTuple):
    """Why a link is (or is not) the NIC: for the log."""

    proven: bool
    why: str


def judge(ident: NicIdentity, link: Mapping[str, Any], frame: Frame, perm_mac: str = "",
          names: Sequence[str] = (), fresh: bool = False) -> Evidence:
    """Is `link` (read in `frame`) the recorded NIC?

    fresh: the record was written before the move finished (no pod-frame peer yet); `names`
    are the names the NIC can have in the pod right after host-device moved it. No workload has run
    in a pod whose ADD has not returned, so name + peer ifindex is what proves it then."""
    name = str(link.get("ifname", ""))
    pci = parent_pci(link)
    if pci and ident.pci:
        return Evidence(pci == ident.pci, f"{name}: PCI parent {pci}"
                        + ("" if pci == ident.pci else f" is not {ident.pci}"))
    perm = permanent_mac(perm_mac)
    if perm and ident.perm_mac:
        return Evidence(perm == ident.perm_mac, f"{name}: permanent MAC {perm}"
                        + ("" if perm == ident.perm_mac else f" is not {ident.perm_mac}"))
    if pci:
        return Evidence(False, f"{name}: PCI parent {pci}, the record names none")
    peer = veth_peer(link)
    want = ident.peer_node if frame is Frame.NODE else ident.peer_pod
    if want:
        return Evidence(peer == want, f"{name}: veth peer {peer or 'none'}"
                        + ("" if peer == want else f" is not {want} ({frame.value} view)"))
    if fresh and frame is Frame.POD and ident.peer_node and peer:
        index = ident.peer_node.split(":")[0]
        ok = name in names and peer.split(":")[0] == index
        return Evidence(ok, f"{name}: veth peer index {peer.split(':')[0]} (recorded "
                        f"{index}) under {'a' if name in names else 'no'} name of the move")
    return Evidence(False, f"{name}: nothing recorded proves it (no PCI parent, no "
                    "permanent MAC, no veth peer)")


def legacy_evidence(ident: NicIdentity, link: Mapping[str, Any]) -> Evidence:
    """A Go-plugin mapping's link on the node: sysfs must say it is the mapping's PCI function
    (and `ip` must not name another parent)."""
    from plugin.device import belongs_to

    name = str(link.get("ifname", ""))
    if not is_pci(ident.pci):
        return Evidence(False, f"{name}: the legacy mapping names no PCI address")
    pci = parent_pci(link)
    if pci:
        return Evidence(pci == ident.pci, f"{name}: PCI parent {pci}"
                        + ("" if pci == ident.pci else f" is not {ident.pci}"))
    if not belongs_to(name, ident.pci):
        return Evidence(False, f"{name}: sysfs does not list it under PCI {ident.pci}")
    return Evidence(True, f"{name}: sysfs lists it under PCI {ident.pci}")


def find(ident: NicIdentity, links: Sequence[Mapping[str, Any]], frame: Frame,
         perm_macs: Mapping[str, str] | None = None, names: Sequence[str] = (),
         fresh: bool = False, legacy_name: str = "") -> tuple[Mapping[str, Any] | None, list[str]]:
    """The one link that is the NIC, and why the links carrying one of `names` are not
    (for the log).

    legacy_name: a Go-plugin mapping on the node, which recorded only a PCI address and a
    name: the link of that name is its NIC only when the node's sysfs (trusted; read, no
    command) lists it under that PCI function. `lo`, a bridge or a tunnel of that name is not."""
    perm_macs = perm_macs or {}
    proven: list[Mapping[str, Any]] = []
    reasons: list[str] = []
    for link in links:
        name = str(link.get("ifname", ""))
        if legacy_name and frame is Frame.NODE and name == legacy_name:
            evidence = legacy_evidence(ident, link)
            if evidence.proven:
                proven.append(link)
            else:
                reasons.append(evidence.why)
            continue
        evidence = judge(ident, link, frame, perm_macs.get(name, ""), names, fresh)
        if evidence.proven:
            proven.append(link)
        elif name in names or name == legacy_name:
            reasons.append(evidence.why)
    if len(proven) > 1:
        reasons.append(f"several links prove to be it ({[x.get('ifname') for x in proven]}); "
                       "not guessing")
        return None, reasons
    return (proven[0] if proven else None), reasons
