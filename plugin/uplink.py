"""The node's uplinks stay safe: what moving a NIC would take from the node.

Moving a netdev takes with it every route through it and every device stacked on it (a bridge
loses the port, a bond its slave; vlan/macvlan/ipvlan uppers are destroyed). So before ADD:
- a default route of the main table, IPv4 or IPv6, through the NIC or anything stacked on it
  (a single nexthop, any nexthop of a multipath route, a nexthop object or group) is the
  node's uplink: refused unless node policy allows it;
- a NIC that is a bridge/bond port or has upper devices is refused unless node policy opts in
  (`allowPortDevices`); then its master is recorded and DEL makes it a port again.

The decision is pure (`assess`) over `ip -d -j link show`, `ip -j route show table all
default` and `ip -j nexthop show`; ADD reads the first two (READS) with the NIC's own state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from plugin.identity import kind

if TYPE_CHECKING:
    from plugin.node import Node

_STACKED_ON_LOWER = ("vlan", "macvlan", "macvtap", "ipvlan", "ipvtap", "vxlan", "macsec")


class Assessment(NamedTuple):
    """What moving the NIC would take from the node."""

    link: Mapping[str, Any] | None  # the NIC as `ip -d -j link show` reported it
    default_route_via: str          # "" or how the node's default route depends on the NIC
    master: str                     # the bridge/bond (or VRF) it is a port of, or ""
    uppers: tuple[str, ...]         # devices stacked on it (masters' chain and lower-linked)
    master_kind: str = ""           # "bridge", "bond", "vrf", ...

    @property
    def breaks_others(self) -> bool:
        """Moving it takes a port from a bridge/bond (any master but a VRF, whose membership
        is only a routing domain) or the lower device from stacked ones."""
        return bool(self.uppers) or bool(self.master and self.master_kind != "vrf")


def _by_name(links: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {str(x.get("ifname", "")): x for x in links}


def stacked(nic: str, links: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every device that depends on `nic`: its master (and theirs), and devices whose lower
    is it or one of those (vlan on a bond on the NIC). A veth's `link` is its peer, not a
    lower: not counted."""
    by_name = _by_name(links)
    found: list[str] = []
    todo = [nic]
    seen = {nic}
    while todo:
        current = todo.pop()
        master = by_name.get(current, {}).get("master")
        nxt = [str(master)] if master else []
        nxt += [name for name, x in by_name.items()
                if x.get("link") == current and "link_netnsid" not in x
                and kind(x) in _STACKED_ON_LOWER]
        for name in nxt:
            if name not in seen:
                seen.add(name)
                found.append(name)
                todo.append(name)
    return found


def _nexthop_devs(nhid: object, nexthops: Mapping[int, Mapping[str, Any]],
                  depth: int = 0) -> set[str]:
    nh = nexthops.get(nhid) if isinstance(nhid, int) else None
    if nh is None or depth > 8:
        return set()
    devs = {str(nh["dev"])} if nh.get("dev") else set()
    for member in nh.get("group") or []:
        if isinstance(member, Mapping):
            devs |= _nexthop_devs(member.get("id"), nexthops, depth + 1)
    return devs


def route_devs(route: Mapping[str, Any], nexthops: Mapping[int, Mapping[str, Any]]) -> set[str]:
    """Every device a route sends traffic through."""
    devs = {str(route["dev"])} if route.get("dev") else set()
    for hop in route.get("nexthops") or []:
        if isinstance(hop, Mapping) and hop.get("dev"):
            devs.add(str(hop["dev"]))
    if "nhid" in route:
        devs |= _nexthop_devs(route["nhid"], nexthops)
    return devs


def _main_default(route: Mapping[str, Any]) -> bool:
    return (route.get("dst") in ("default", "0.0.0.0/0", "::/0")
            and str(route.get("table", "main")) in ("main", "254")
            and str(route.get("type", "unicast")) in ("unicast", "1"))  # `ip -N`: numbers


def assess(nic: str, links: Sequence[Mapping[str, Any]], routes: Sequence[Mapping[str, Any]],
           nexthops: Sequence[Mapping[str, Any]] = ()) -> Assessment:
    link = _by_name(links).get(nic)
    uppers = stacked(nic, links)
    master = str(link.get("master", "")) if link else ""
    by_id = {x["id"]: x for x in nexthops if isinstance(x.get("id"), int)}
    via = ""
    for route in routes:
        if not _main_default(route):
            continue
        devs = route_devs(route, by_id)
        family = "IPv6" if ":" in str(route.get("gateway", "")) or "pref" in route else "IPv4"
        if nic in devs:
            how = "a nexthop of its multipath" if route.get("nexthops") or "nhid" in route \
                else "it"
            via = f"the node's {family} default route goes through {how}"
            break
        hit = [u for u in uppers if u in devs]
        if hit:
            via = f"the node's {family} default route goes through {hit[0]}, stacked on it"
            break
    master_kind = kind(_by_name(links).get(master, {})) if master else ""
    return Assessment(link, via, master, tuple(u for u in uppers if u != master), master_kind)


def needs_nexthops(routes: Sequence[Mapping[str, Any]]) -> bool:
    return any("nhid" in r for r in routes if _main_default(r))


# What `inspect` needs read, as `ip -d -j` batch lines: ADD reads them in the same process
# as the NIC's own addresses and routes.
READS = ("link show", "route show table all default")


def inspect(node: Node, nic: str, links: Sequence[Mapping[str, Any]],
            routes: Sequence[Mapping[str, Any]]) -> Assessment:
    """`assess` over the READS; nexthop objects are read only when a default route uses one
    (older kernels have none)."""
    from plugin import backend
    from plugin.errors import NETWORK_COMMAND_FAILED, CniError

    nexthops: list[dict[str, Any]] = []
    if needs_nexthops(routes):
        try:
            nexthops = backend.ip_json(node, ["nexthop show"])[0]
        except backend.CommandFailed as e:
            raise CniError(NETWORK_COMMAND_FAILED, f"cannot read the node's nexthops before "
                           f"moving {nic}", str(e)) from None
    return assess(nic, links, routes, nexthops)
