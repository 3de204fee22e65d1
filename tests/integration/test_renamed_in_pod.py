"""An interface renamed and re-MAC'd inside the pod is still found and given back.
Real ip, host-device, namespaces."""



from tests.support.checks import ns, ok, restored
from tests.support.simnode import sh


def test_interface_renamed_and_re_mac_ed_inside_the_pod_is_still_given_back(node, pod):
    nic = node.nics[0]
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    p = ns(pod)
    sh("ip", "-n", p, "link", "set", "net1", "down")
    sh("ip", "-n", p, "link", "set", "net1", "name", "data0")
    sh("ip", "-n", p, "link", "set", "data0", "up")
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))
    assert restored(node, nic) and node.link(p, "data0") is None

    ok(node.cni("ADD", node.conf(nic.pci), "c2", pod, "net1"))
    sh("ip", "-n", p, "link", "set", "net1", "address", "02:11:22:33:44:55")
    ok(node.cni("DEL", node.conf(nic.pci), "c2", pod, "net1"))
    assert restored(node, nic)
    assert node.link(node.node, nic.name)["address"] == node.macs[nic.pci]
