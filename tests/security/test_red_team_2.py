"""Second red team: attacks on the fixes of the first (tests/security/test_red_team.py,
test_hostile_netns.py, test_pod_changes.py, test_trust_boundary.py) and on newer surfaces.
Each test FAILS on the code it was written against and passes once the attack is refused.
Real ip, the real host-device, veth NICs in namespaces (tests/support/simnode.py); the node
is cleaned by the fixtures; anything that could hang is bounded by a timeout.
"""

import subprocess

from tests.support.checks import ns, ok, records, restored


def sh(*argv):
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


def details(node, netns, name):
    found = node.ip_json(netns, "-d", "link", "show", "dev", name)
    return found[0] if found else None


# -- the pod-side give-back: link properties LinkSettings does not record ------------------

def test_link_broadcast_address_the_pod_set_does_not_come_home(node, pod):
    """`ip link set net1 broadcast <mac>` stays with the netdev across namespaces; it is not
    in LinkSettings, so the node NIC comes home sending every ARP request (and every IPv4
    broadcast) to a unicast MAC: the node can no longer resolve a new neighbour on it."""
    nic = node.nics[0]
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    sh("ip", "-n", ns(pod), "link", "set", "net1", "broadcast", "00:11:22:33:44:55")
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))
    assert restored(node, nic) and records(node) == []
    sh("ip", "-n", node.node, "neigh", "flush", "dev", nic.name)
    reaches_tor = node.ping(node.node, nic.peer_v4)
    assert details(node, node.node, nic.name)["broadcast"] == "ff:ff:ff:ff:ff:ff"
    assert reaches_tor


def test_link_mode_dormant_the_pod_set_does_not_come_home(node, pod):
    """`ip link set net1 mode dormant` (IFLA_LINKMODE) stays with the netdev: the node NIC
    comes home in DORMANT link mode, which network managers read as 'not ready'."""
    nic = node.nics[0]
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    sh("ip", "-n", ns(pod), "link", "set", "net1", "mode", "dormant")
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))
    assert restored(node, nic) and records(node) == []
    assert details(node, node.node, nic.name).get("linkmode") == "DEFAULT"


def test_ethtool_channels_the_pod_set_do_not_come_home(node, pod):
    """`ethtool -L` (queue count) stays with the NIC; only `ethtool -K` offloads are
    recorded, so a pod can leave the node NIC with one queue (rings -G, coalescing -C,
    RSS -X, WoL -s are the same class on real hardware)."""
    nic = node.nics[0]
    def channels(netns, dev):
        out = subprocess.run(["ip", "netns", "exec", netns, "ethtool", "-l", dev], check=True,
                             capture_output=True, text=True, timeout=30).stdout
        return out.split("Current hardware settings:", 1)[1]
    before = channels(node.node, nic.name)
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    sh("ip", "netns", "exec", ns(pod), "ethtool", "-L", "net1", "rx", "2", "tx", "2")
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))
    assert restored(node, nic) and records(node) == []
    assert channels(node.node, nic.name) == before
