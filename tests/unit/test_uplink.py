"""The uplink guard, table-driven: recorded `ip -d -j link show`, `ip -j route show table all
default` and `ip -j nexthop show` of a node with a bridge, IPv4/IPv6 multipath and a nexthop
group (tests/data/identity/), plus constructed vlan/macvlan/ipvlan/bond objects: those link
types cannot be created on this machine."""

import json
import os

import pytest

from plugin import uplink

DATA = os.path.join(os.path.dirname(__file__), "..", "data", "identity")


def load(name):
    with open(os.path.join(DATA, name + ".json")) as f:
        return json.load(f)


BRIDGE_LINKS = load("node_links_bridge")        # ens1f1 is a port of br0; ens1f0 is not
DEFAULTS = load("node_default_routes")          # v4 via br0; v6 multipath ens1f0+ens1f1;
#                                                 table 100 nhid group (ens1f0, br0)
DEFAULTS_MP = load("node_default_routes_multipath")  # v4 multipath ens1f0+br0 as well
NEXTHOPS = load("node_nexthops")                # 7: ens1f0, 8: br0, 9: group 7/8


def nic(name, **extra):
    return {"ifname": name, "linkinfo": {"info_kind": ""}, **extra}


def upper(name, kind, lower, **extra):
    return {"ifname": name, "link": lower, "linkinfo": {"info_kind": kind}, **extra}


STACK = [nic("eth0", master="bond0"), upper("bond0", "bond", None),
         upper("bond0.10", "vlan", "bond0"), nic("eth1"), upper("mv0", "macvlan", "eth1"),
         nic("eth2"), upper("ipv0", "ipvlan", "eth2"),
         {"ifname": "veth0", "link": "eth2", "linkinfo": {"info_kind": "veth"}},
         nic("eth3"), upper("mvx", "macvlan", "eth3", link_netnsid=1)]


def default(dev=None, v6=False, **extra):
    route = {"dst": "default", "flags": []}
    if dev:
        route["dev"] = dev
        route["gateway"] = "fd00::1" if v6 else "10.0.0.1"
    if v6:
        route["pref"] = "medium"
    return route | extra


CASES = [
    # (why, nic, links, routes, nexthops, default route words or "", master, uppers)
    ("recorded: v6 multipath through the NIC", "ens1f0", BRIDGE_LINKS, DEFAULTS, NEXTHOPS,
     "IPv6 default route goes through a nexthop of its multipath", "", ()),
    ("recorded: v4 default via the bridge the NIC is a port of", "ens1f1", BRIDGE_LINKS,
     DEFAULTS, NEXTHOPS, "IPv4 default route goes through br0, stacked on it", "br0", ()),
    ("recorded: v4 multipath, one hop through the NIC", "ens1f0", BRIDGE_LINKS,
     DEFAULTS_MP[:2], NEXTHOPS, "IPv4 default route goes through a nexthop", "", ()),
    ("another table's default route is not the node's uplink", "ens1f0", BRIDGE_LINKS,
     DEFAULTS[:1], NEXTHOPS, "", "", ()),
    ("nexthop group object resolved", "ens1f0", BRIDGE_LINKS,
     [{"dst": "default", "nhid": 9, "flags": []}], NEXTHOPS, "goes through a nexthop", "",
     ()),
    ("nexthop object through the bridge above the port", "ens1f1", BRIDGE_LINKS,
     [{"dst": "default", "nhid": 8, "flags": []}], NEXTHOPS, "through br0", "br0", ()),
    ("a NIC no default route uses", "lo", BRIDGE_LINKS, DEFAULTS, NEXTHOPS, "", "", ()),
    ("v4 default via a vlan on the bond the NIC is a port of", "eth0", STACK,
     [default("bond0.10")], (), "IPv4 default route goes through bond0.10", "bond0",
     ("bond0.10",)),
    ("v6 default via a macvlan on the NIC", "eth1", STACK, [default("mv0", v6=True)], (),
     "IPv6 default route goes through mv0", "", ("mv0",)),
    ("ipvlan on the NIC, no default route through it", "eth2", STACK, [default("eth1")], (),
     "", "", ("ipv0",)),
    ("a veth whose peer names the NIC is no upper", "eth2", STACK, [default("veth0")], (),
     "", "", ("ipv0",)),
    ("a macvlan in another netns is not the node's", "eth3", STACK, [default("mvx")], (),
     "", "", ()),
    ("a default route through the NIC itself", "eth1", STACK, [default("eth1", v6=True)], (),
     "IPv6 default route goes through it", "", ("mv0",)),
    ("unreachable/blackhole defaults carry nothing", "eth1", STACK,
     [default("eth1", type="blackhole")], (), "", "", ("mv0",)),
]


@pytest.mark.parametrize("why,name,links,routes,nexthops,via,master,uppers", CASES,
                         ids=[c[0] for c in CASES])
def test_what_moving_the_nic_takes_from_the_node(why, name, links, routes, nexthops, via,
                                                 master, uppers):
    seen = uplink.assess(name, links, routes, nexthops)
    assert (via in seen.default_route_via) and bool(via) == bool(seen.default_route_via), \
        seen.default_route_via
    assert seen.master == master
    assert seen.uppers == uppers


@pytest.mark.parametrize("links,breaks", [
    (BRIDGE_LINKS, True),
    ([nic("ens1f1", master="vrf-a"), upper("vrf-a", "vrf", None)], False),
    ([nic("ens1f1", master="bond0"), upper("bond0", "bond", None)], True),
    ([nic("ens1f1"), upper("mv0", "macvlan", "ens1f1")], True),
    ([nic("ens1f1")], False),
])
def test_a_port_or_lower_device_is_refused_unless_its_master_is_a_vrf(links, breaks):
    assert uplink.assess("ens1f1", links, []).breaks_others == breaks


def test_nexthop_objects_are_read_only_when_a_default_route_uses_one():
    assert not uplink.needs_nexthops(DEFAULTS_MP[1:])
    assert uplink.needs_nexthops([{"dst": "default", "nhid": 3}])
    assert not uplink.needs_nexthops([{"dst": "default", "nhid": 3, "table": "100"}])


def test_a_nexthop_group_loop_ends():
    loop = [{"id": 1, "group": [{"id": 2}]}, {"id": 2, "group": [{"id": 1}]}]
    assert uplink.assess("eth0", [nic("eth0")], [{"dst": "default", "nhid": 1}],
                         loop).default_route_via == ""
