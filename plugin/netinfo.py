"""What a faithful restore needs to know about a NIC, read from `ip -j` and written back as
`ip -batch` lines.

Pure data and text: no commands run here, so recorded JSON exercises all of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

FOREVER = 4294967295
# Address flags that change behaviour and that `ip addr add` accepts back.
_ADDR_FLAGS = ("nodad", "noprefixroute", "home", "optimistic", "mngtmpaddr")
# Routes the kernel (or router advertisements) re-create by themselves.
_SKIP_PROTOCOLS = ("kernel", "ra")
_SKIP_TYPES = ("local", "broadcast", "multicast", "anycast")


@dataclass(frozen=True)
class Address:
    """An address as the kernel reported it, with what `ip addr add` needs back."""

    family: str                 # "inet" | "inet6"
    local: str
    prefixlen: int
    peer: str = ""              # "peer" addresses: local is /32, the prefix is on the peer
    broadcast: str = ""
    label: str = ""
    flags: tuple[str, ...] = ()
    valid_lft: int = FOREVER
    preferred_lft: int = FOREVER

    @property
    def cidr(self) -> str:
        """The address as the pod's static IPAM (and CNI results) want it."""
        return f"{self.local}/{self.prefixlen}"

    def add_line(self, dev: str) -> str:
        words = ["address", "replace", self.cidr if not self.peer else self.local]
        if self.peer:
            words += ["peer", f"{self.peer}/{self.prefixlen}"]
        if self.broadcast:
            words += ["broadcast", self.broadcast]
        words += ["dev", dev]
        if self.label and self.label != dev and self.label.startswith(dev):
            words += ["label", self.label]
        if self.valid_lft != FOREVER:
            words += ["valid_lft", str(self.valid_lft), "preferred_lft", str(self.preferred_lft)]
        words += list(self.flags)
        return " ".join(words)


@dataclass(frozen=True)
class RouteEntry:
    """A route through the NIC, in any table, as the kernel reported it."""

    family: str
    dst: str
    gateway: str = ""
    table: str = "main"
    protocol: str = ""
    scope: str = ""
    metric: int | None = None
    prefsrc: str = ""
    type: str = "unicast"
    onlink: bool = False
    mtu: int = 0

    @property
    def is_default(self) -> bool:
        return self.dst in ("default", "0.0.0.0/0", "::/0")

    @property
    def restorable(self) -> bool:
        return self.protocol not in _SKIP_PROTOCOLS and self.type not in _SKIP_TYPES

    def replace_line(self, dev: str) -> str:
        dst = self.dst
        if dst == "default":
            dst = "::/0" if self.family == "inet6" else "0.0.0.0/0"
        words = ["route", "replace"]
        if self.type != "unicast":
            words.append(self.type)
        words.append(dst)
        if self.gateway:
            words += ["via", self.gateway]
        words += ["dev", dev]
        if self.table != "main":
            words += ["table", self.table]
        if self.protocol:
            words += ["proto", self.protocol]
        if self.scope:
            words += ["scope", self.scope]
        if self.metric is not None:
            words += ["metric", str(self.metric)]
        if self.prefsrc:
            words += ["src", self.prefsrc]
        if self.mtu:
            words += ["mtu", str(self.mtu)]
        if self.onlink:
            words.append("onlink")
        return " ".join(words)


@dataclass(frozen=True)
class LinkSnapshot:
    """The NIC as it was on the node before the pod took it."""
    name: str
    mac: str
    mtu: int
    up: bool
    addresses: tuple[Address, ...]
    routes: tuple[RouteEntry, ...]

    @property
    def carries_default_route(self) -> bool:
        return any(r.is_default and r.table == "main" and r.type == "unicast"
                   for r in self.routes)

    def restore_lines(self, current_name: str, current_mac: str = "") -> list[str]:
        """`ip -batch` lines that give the node back this NIC's configuration.

        Order matters: rename needs the link down, routes need the link up and its addresses."""
        lines = []
        dev = current_name
        if current_name != self.name:
            lines += [f"link set dev {current_name} down",
                      f"link set dev {current_name} name {self.name}"]
            dev = self.name
        if current_mac and self.mac and current_mac.lower() != self.mac.lower():
            lines.append(f"link set dev {dev} address {self.mac}")
        if self.mtu:  # 0: not known (records inherited from AMD's Go plugin)
            lines.append(f"link set dev {dev} mtu {self.mtu}")
        lines += [a.add_line(dev) for a in self.addresses]
        if self.up:
            lines.append(f"link set dev {dev} up")
        lines += [r.replace_line(dev) for r in self.routes if r.restorable]
        return lines

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> LinkSnapshot:
        return cls(name=obj["name"], mac=obj["mac"], mtu=int(obj["mtu"]), up=bool(obj["up"]),
                   addresses=tuple(Address(**{**a, "flags": tuple(a.get("flags", ()))})
                                   for a in obj["addresses"]),
                   routes=tuple(RouteEntry(**r) for r in obj["routes"]))


def _family_of(route: Mapping[str, Any]) -> str:
    """`ip -j route show table all` mixes families and does not name them."""
    for key in ("dst", "gateway", "prefsrc"):
        value = route.get(key, "")
        if isinstance(value, str) and ":" in value:
            return "inet6"
    via = route.get("via")
    if isinstance(via, Mapping) and via.get("family") == "inet6":
        return "inet6"
    return "inet6" if "pref" in route else "inet"


def parse_address(a: Mapping[str, Any]) -> Address | None:
    """One addr_info entry; None for what a restore must not carry (link-local, kernel-made)."""
    if a.get("family") not in ("inet", "inet6") or a.get("scope") == "link":
        return None
    local = a.get("local", "")
    address = a.get("address", "")
    peer = address if address and address != local else ""
    return Address(family=a["family"], local=local, prefixlen=int(a.get("prefixlen", 0)),
                   peer=peer, broadcast=a.get("broadcast", "") if a["family"] == "inet" else "",
                   label=a.get("label", ""),
                   flags=tuple(f for f in _ADDR_FLAGS if a.get(f)),
                   valid_lft=int(a.get("valid_life_time", FOREVER)),
                   preferred_lft=int(a.get("preferred_life_time", FOREVER)))


def parse_route(r: Mapping[str, Any]) -> RouteEntry | None:
    if "nexthops" in r:
        return None  # multipath: not tied to this NIC alone; left to whoever made it
    metrics = r.get("metrics") or []
    mtu = 0
    for m in metrics if isinstance(metrics, list) else []:
        if isinstance(m, Mapping) and isinstance(m.get("mtu"), int):
            mtu = m["mtu"]
    gateway = r.get("gateway", "")
    if not gateway and isinstance(r.get("via"), Mapping):
        gateway = r["via"].get("host", "")
    return RouteEntry(family=_family_of(r), dst=r.get("dst", ""), gateway=gateway,
                      table=str(r.get("table", "main")), protocol=r.get("protocol", ""),
                      scope=r.get("scope", ""), metric=r.get("metric"),
                      prefsrc=r.get("prefsrc", ""), type=r.get("type", "unicast"),
                      onlink="onlink" in (r.get("flags") or []), mtu=mtu)


def parse_snapshot(addr_show: Sequence[Mapping[str, Any]],
                   routes: Iterable[Mapping[str, Any]]) -> LinkSnapshot:
    """From `ip -j addr show dev X` and `ip -j route show table all dev X`."""
    link = addr_show[0]
    addresses = tuple(a for a in (parse_address(x) for x in link.get("addr_info", [])) if a)
    parsed = tuple(r for r in (parse_route(x) for x in routes) if r)
    return LinkSnapshot(name=link["ifname"], mac=link.get("address", ""), mtu=int(link["mtu"]),
                        up="UP" in link.get("flags", []), addresses=addresses, routes=parsed)
