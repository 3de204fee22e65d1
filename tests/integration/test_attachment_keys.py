"""Records are keyed by container ID and ifname: a late DEL of an old sandbox is harmless, and
DEL needs no deviceID.
Real ip, host-device, namespaces."""



from tests.support.checks import ns, ok, records, restored
from tests.support.simnode import sh


def test_a_late_del_from_an_old_sandbox_keeps_the_newer_attachment(node):
    nic = node.nics[0]
    old = node.add_pod()
    ok(node.cni("ADD", node.conf(nic.pci), "old", node.netns_path(old), "net1"))
    # the old sandbox dies; like a physical NIC, ours comes home under its pod-side name
    sh("ip", "-n", old, "link", "set", "net1", "netns", node.node)
    node.remove_pod(old)
    new = node.netns_path(node.add_pod())
    ok(node.cni("ADD", node.conf(nic.pci), "new", new, "net1"))
    ok(node.cni("DEL", node.conf(nic.pci), "old", node.netns_path(old), "net1"))
    assert records(node) == ["new@net1.json"]
    assert node.addresses(ns(new), "net1") == {nic.v4, nic.v6}
    ok(node.cni("DEL", node.conf(nic.pci), "new", new, "net1"))
    assert restored(node, nic)


def test_del_without_device_id_in_the_config(node, pod):
    nic = node.nics[0]
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    ok(node.cni("DEL", node.conf(""), "c1", pod, "net1"))
    assert restored(node, nic) and records(node) == []
