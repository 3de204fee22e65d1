"""The pod's IPv6 DAD settings around ADD (plugin/dad.py): whatever the pod's netns says
before ADD, ADD returns only once the NIC's addresses are usable, and the pod's settings are
its own again afterwards. The pod's sysctls may be set before ADD (CRI-O's pinns applies a
pod's `securityContext.sysctls` when it creates the netns). Real ip, the real host-device,
veth NICs in namespaces (tests/support/simnode.py).
"""

from tests.support.checks import ns, ok
from tests.support.simnode import sh


def _sysctl(pod, *keys):
    return sh("ip", "netns", "exec", ns(pod), "sysctl", "-n", *keys).stdout.split()


def test_a_pod_whose_all_accept_dad_is_on_gets_no_tentative_address(node, pod):
    """Attack: the pod's netns has net.ipv6.conf.all.accept_dad=1. The kernel runs DAD when
    `all` or the link's own accept_dad is on, so turning the pod's `default` off did not skip
    DAD, yet ADD took it as skipped and returned without waiting: the workload started with
    its IPv6 address tentative (unusable for a second; with a duplicate on the link, failed
    and ADD still succeeded). Safe: ADD waits for DAD like any other, and the pod's settings
    are its own afterwards."""
    nic = node.nics[0]
    sh("ip", "netns", "exec", ns(pod), "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=1")
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    address = nic.v6.split("/")[0]
    found = next((a for a in (node.link(ns(pod), "net1") or {}).get("addr_info", [])
                  if a["local"] == address), None)
    assert found is not None and not found.get("tentative") and not found.get("dadfailed"), found
    assert _sysctl(pod, "net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad",
                   "net.ipv6.conf.net1.accept_dad") == ["1", "1", "1"]
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))
