"""Upgrade in place from AMD's Go plugin: its ip-interface-mappings.json is honoured by DEL, GC
and ADD.
Real ip, host-device, namespaces."""

import json
import os

import pytest

from tests.support.checks import gc_call, ns, ok, restored
from tests.support.simnode import sh


def read_json(path):
    with open(path) as f:
        return json.load(f)


def go_plugin_add(node, nic, pod, ifname):
    """What AMD's Go plugin did: host-device ADD with static IPAM, and a mapping by deviceID."""
    conf = {"cniVersion": "0.3.1", "name": "nad", "type": "host-device", "device": nic.name,
            "ipam": {"type": "static", "addresses": [{"address": nic.v4}, {"address": nic.v6}]}}
    call = node.cni("ADD", conf, "gopod", pod, ifname, plugin="/usr/lib/cni/host-device")
    assert call.rc == 0, call.stdout
    os.makedirs(node.state_dir, exist_ok=True)
    path = os.path.join(node.state_dir, "ip-interface-mappings.json")
    data = read_json(path) if os.path.exists(path) else {}
    data[nic.pci] = {"hostInterfaceName": nic.name, "hostInterfaceIPs": [nic.v4, nic.v6],
                     "state": "UP"}
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
    return path


@pytest.mark.parametrize("pod_ifname", ["net1", "ens1f0"])  # newer / older Go releases
def test_del_of_a_pod_created_by_the_go_plugin(node, pod, pod_ifname):
    """The Go plugin recorded no identity: in a pod only a PCI parent proves its NIC (our veth
    NICs have none), so DEL keeps the mapping until the NIC is home, as a physical NIC comes
    home when its pod's netns dies; on the node, the link of its name that sysfs lists under
    its PCI function."""
    a, b = node.nics
    path = go_plugin_add(node, a, pod, pod_ifname)
    go_plugin_add(node, b, node.netns_path(node.add_pod()), "net1")
    ok(node.cni("DEL", node.conf(a.pci), "gopod", pod, pod_ifname))
    assert node.link(ns(pod), pod_ifname) is not None  # not provably its NIC: not taken
    assert sorted(read_json(path)) == sorted([a.pci, b.pci])
    sh("ip", "-n", ns(pod), "link", "set", pod_ifname, "netns", node.node)
    if pod_ifname != a.name:
        sh("ip", "-n", node.node, "link", "set", pod_ifname, "name", a.name)
    ok(node.cni("DEL", node.conf(a.pci), "gopod", pod, pod_ifname))
    assert restored(node, a)
    assert list(read_json(path)) == [b.pci]  # only its own entry is dropped


def test_gc_and_add_honour_go_plugin_entries_for_nics_already_home(node, pod):
    a, b = node.nics
    p1, p2 = (node.add_pod() for _ in range(2))
    path = go_plugin_add(node, a, node.netns_path(p1), "net1")
    go_plugin_add(node, b, node.netns_path(p2), "net1")
    for p, nic in ((p1, a), (p2, b)):  # both Go pods die; host-device gives the NICs back bare
        assert node.cni("DEL", {"cniVersion": "0.3.1", "name": "nad", "type": "host-device",
                                "device": nic.name}, "gopod", node.netns_path(p), "net1",
                        plugin="/usr/lib/cni/host-device").rc == 0
    assert node.addresses(node.node, a.name) == set()
    ok(gc_call(node, []))
    assert restored(node, a) and restored(node, b)
    assert not os.path.exists(path)

    go_plugin_add(node, a, node.netns_path(p1), "net1")
    sh("ip", "-n", p1, "link", "set", "net1", "netns", node.node)  # home bare, as net1
    ok(node.cni("ADD", node.conf(a.pci), "c1", pod, "net1"))
    assert node.addresses(ns(pod), "net1") == {a.v4, a.v6}
    ok(node.cni("DEL", node.conf(a.pci), "c1", pod, "net1"))
    assert restored(node, a)
