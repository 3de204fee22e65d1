"""What a pod with NET_ADMIN does to the NIC it was given stays in the pod: names it gives it
or its neighbours cannot wedge DEL, and its altnames, flags and settings do not come home.

Beyond tests/security/test_red_team.py (rows 6 to 11): the NIC's own node altnames come back,
a pod altname no batch line may carry goes, promisc/allmulticast are put back, no temporary
name stays behind, and records written before link settings were recorded still give back.
Real ip, the real host-device, veth NICs in namespaces (tests/support/simnode.py).
"""


from tests.support.checks import details, edit_record, ns, ok, records, restored
from tests.support.simnode import sh


def test_the_nics_own_altnames_come_home_and_the_pods_do_not(node, pod):
    a, b = node.nics
    sh("ip", "-n", node.node, "link", "property", "add", "dev", a.name, "altname", "enp1s0f0")
    ok(node.cni("ADD", node.conf(a.pci), "c1", pod, "net1"))
    p = ns(pod)
    # One no batch line may carry, one that is a node NIC's name, one harmless.
    for alt in ("x#y", b.name, "podname"):
        sh("ip", "-n", p, "link", "property", "add", "dev", "net1", "altname", alt)
    ok(node.cni("DEL", node.conf(a.pci), "c1", pod, "net1"))
    assert restored(node, a) and restored(node, b) and records(node) == []
    assert details(node, node.node, a.name).get("altnames") == ["enp1s0f0"]


def test_promisc_and_allmulticast_the_pod_set_do_not_come_home(node, pod):
    nic = node.nics[0]
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    sh("ip", "-n", ns(pod), "link", "set", "net1", "promisc", "on", "allmulticast", "on")
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))
    assert restored(node, nic)
    flags = node.link(node.node, nic.name)["flags"]
    assert "PROMISC" not in flags and "ALLMULTI" not in flags, flags


def test_no_temporary_name_or_alias_stays_on_the_node(node, pod):
    nic = node.nics[0]
    before = sorted(x["ifname"] for x in node.ip_json(node.node, "link"))
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))
    assert sorted(x["ifname"] for x in node.ip_json(node.node, "link")) == before
    assert details(node, node.node, nic.name).get("ifalias") == nic.name


def test_a_record_from_before_link_settings_still_gives_the_nic_back(node, pod):
    nic = node.nics[0]
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    sh("ip", "-n", ns(pod), "link", "property", "add", "dev", "net1", "altname", "cni0")

    def older(obj):
        assert "settings" in obj["snapshot"] and "altnames" in obj["snapshot"]
        del obj["snapshot"]["settings"], obj["snapshot"]["altnames"]
    edit_record(node, "c1@net1.json", older)
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))
    assert restored(node, nic) and records(node) == []
    assert node.link(node.node, "cni0") is None  # deleted in the pod before the move
