"""ADD/DEL/CHECK with the real host-device and static plugins on veth NICs in namespaces.

Every test runs twice: in process, and through the resident daemon (thick mode) that the
simulated node runs in its netns the way the DaemonSet runs it on a node.
"""

import pytest

from tests.support.checks import ok
from tests.support.simnode import sh

VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]


# Every test twice: in process, and through the daemon (conftest.py).
pytestmark = pytest.mark.usefixtures("transport")


@pytest.mark.parametrize("version", VERSIONS)
def test_add_moves_the_nic_with_its_addresses_and_del_restores_it(node, pod, version):
    nic = node.nics[0]
    sh("ip", "-n", node.node, "route", "add", "10.201.0.0/16", "via", nic.peer_v4, "dev", nic.name,
       "metric", "42")
    sh("ip", "-n", node.node, "route", "add", "10.202.0.0/16", "via", nic.peer_v4, "dev", nic.name,
       "table", "77")
    sh("ip", "-n", node.node, "link", "set", nic.name, "mtu", "4000")
    routes_before = node.ip_json(node.node, "route", "show", "table", "all", "dev", nic.name)

    result = ok(node.cni("ADD", node.conf(nic.pci, version), "c1", pod, "net1"))
    assert result["cniVersion"] == version
    iface = result["interfaces"][0]
    assert iface["name"] == "net1" and iface["sandbox"] == pod
    assert ("mtu" in iface, "pciID" in iface) == ((version == "1.1.0"),) * 2
    if version == "1.1.0":
        assert (iface["mtu"], iface["pciID"]) == (4000, nic.pci)
    assert {ip["address"] for ip in result["ips"]} == {nic.v4, nic.v6}
    assert all(("version" in ip) == version.startswith("0.") for ip in result["ips"])
    assert node.link(node.node, nic.name) is None
    assert node.addresses(pod.rsplit("/", 1)[1], "net1") == {nic.v4, nic.v6}
    assert node.ping(pod.rsplit("/", 1)[1], nic.peer_v4)

    ok(node.cni("DEL", node.conf(nic.pci, version), "c1", pod, "net1"))
    link = node.link(node.node, nic.name)
    assert link is not None and "UP" in link["flags"] and link["mtu"] == 4000
    assert node.addresses(node.node, nic.name) == {nic.v4, nic.v6}
    v6 = next(a for a in link["addr_info"] if a["local"] == nic.v6.split("/")[0])
    assert v6.get("nodad") is True
    routes_after = node.ip_json(node.node, "route", "show", "table", "all", "dev", nic.name)
    key = lambda r: (r.get("dst"), r.get("gateway"), r.get("table"), r.get("metric"))  # noqa: E731
    assert sorted(map(key, routes_after)) == sorted(map(key, routes_before))
    assert node.ping(node.node, nic.peer_v4)
    assert node.link(pod.rsplit("/", 1)[1], "net1") is None


def test_a_down_nic_comes_back_down(node, pod):
    nic = node.nics[1]
    sh("ip", "-n", node.node, "link", "set", nic.name, "down")
    before = node.addresses(node.node, nic.name)  # the kernel drops IPv6 on a down link
    assert nic.v4 in before
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))
    link = node.link(node.node, nic.name)
    assert "UP" not in link["flags"]
    assert node.addresses(node.node, nic.name) == before


def test_double_del_and_del_without_add_succeed(node, pod):
    nic = node.nics[0]
    ok(node.cni("DEL", node.conf(nic.pci), "never-added", pod, "net1"))
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))
    ok(node.cni("DEL", node.conf(nic.pci), "c1", "", "net1"))
    assert node.addresses(node.node, nic.name) == {nic.v4, nic.v6}


@pytest.mark.parametrize("version", ["0.4.0", "1.0.0", "1.1.0"])
def test_check_passes_then_fails_when_an_address_is_removed(node, pod, version):
    nic = node.nics[0]
    result = ok(node.cni("ADD", node.conf(nic.pci, version), "c1", pod, "net1"))
    conf = node.conf(nic.pci, version, prevResult=result)
    ok(node.cni("CHECK", conf, "c1", pod, "net1"))
    sh("ip", "-n", pod.rsplit("/", 1)[1], "addr", "del", nic.v4, "dev", "net1")
    bad = node.cni("CHECK", conf, "c1", pod, "net1")
    assert bad.rc != 0 and bad.json["code"] == 102 and nic.v4 in bad.json["msg"]
    ok(node.cni("DEL", node.conf(nic.pci, version), "c1", pod, "net1"))
    assert node.addresses(node.node, nic.name) == {nic.v4, nic.v6}


def test_check_is_refused_before_0_4_0(node, pod):
    bad = node.cni("CHECK", node.conf(node.nics[0].pci, "0.3.1", prevResult={}), "c1", pod, "net1")
    assert bad.json["code"] == 1


def test_version(node):
    out = ok(node.cni("VERSION", {"cniVersion": "1.1.0"}))
    assert out == {"cniVersion": "1.1.0",
                   "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]}


def test_two_nics_for_one_pod_like_the_seed_pod(node, pod):
    a, b = node.nics
    r1 = ok(node.cni("ADD", node.conf(a.pci), "sandbox1", pod, "net1"))
    r2 = ok(node.cni("ADD", node.conf(b.pci), "sandbox1", pod, "net2"))
    name = pod.rsplit("/", 1)[1]
    assert node.addresses(name, "net1") == {a.v4, a.v6} and node.addresses(name, "net2") == {b.v4, b.v6}
    assert r1["interfaces"][0]["name"] == "net1" and r2["interfaces"][0]["name"] == "net2"
    assert node.ping(name, a.peer_v4) and node.ping(name, b.peer_v4)
    ok(node.cni("DEL", node.conf(b.pci), "sandbox1", pod, "net2"))
    ok(node.cni("DEL", node.conf(a.pci), "sandbox1", pod, "net1"))
    assert node.addresses(node.node, a.name) == {a.v4, a.v6}
    assert node.addresses(node.node, b.name) == {b.v4, b.v6}


def test_a_nic_already_in_a_pod_cannot_be_added_again(node, pod):
    nic = node.nics[0]
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    other = node.netns_path(node.add_pod())
    bad = node.cni("ADD", node.conf(nic.pci), "c2", other, "net1")
    assert bad.rc != 0 and bad.json["code"] == 103 and "c1/net1" in bad.json["msg"]
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))
    assert node.addresses(node.node, nic.name) == {nic.v4, nic.v6}


def test_logs_go_to_stderr_with_container_and_device(node, pod, transport):
    """In process, on the plugin's stderr; through the daemon, on the daemon's log (as with
    Multus thick), and the shim prints nothing."""
    nic = node.nics[0]
    call = node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1")
    ok(call)
    if transport == "daemon":
        assert call.stderr == ""
        log = [x for x in node.daemon_log().splitlines() if "cmd=DAEMON" not in x]
    else:
        log = call.stderr.splitlines()
    lines = [x for x in log if x.strip()]
    assert lines and all("container=c1" in x and f"device={nic.pci}" in x for x in lines)
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))


def test_name_based_selection_like_host_device(node, pod):
    """`device` instead of a PCI address: clusters without a device plugin, kind's veths."""
    nic = node.nics[1]
    conf = node.conf("", device=nic.name)
    result = ok(node.cni("ADD", conf, "c1", pod, "net1"))
    assert result["interfaces"][0]["name"] == "net1"
    assert node.addresses(pod.rsplit("/", 1)[1], "net1") == {nic.v4, nic.v6}
    assert node.ping(pod.rsplit("/", 1)[1], nic.peer_v4)
    ok(node.cni("DEL", node.conf(""), "c1", pod, "net1"))
    assert node.addresses(node.node, nic.name) == {nic.v4, nic.v6}


def test_pci_address_wins_over_a_device_name(node, pod):
    a, b = node.nics
    ok(node.cni("ADD", node.conf(a.pci, device=b.name), "c1", pod, "net1"))
    assert node.link(node.node, a.name) is None and node.link(node.node, b.name) is not None
    ok(node.cni("DEL", node.conf(a.pci), "c1", pod, "net1"))


def test_unknown_device_name_leaves_the_node_untouched(node, pod, untouched):
    call = node.cni("ADD", node.conf("", device="nosuch0"), "c1", pod, "net1")
    assert call.rc != 0 and call.json["code"] == 7 and "nosuch0" in call.json["msg"]
    node.write_policy(allowNonPciDevices=True)  # then it gets as far as ip, which says so
    call = node.cni("ADD", node.conf("", device="nosuch0"), "c1", pod, "net1")
    assert call.rc != 0 and call.json["code"] == 101 and "nosuch0" in call.json["msg"]
    untouched()
