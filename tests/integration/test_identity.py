"""Issue 11: the right NIC, the right network, the node's uplinks.

Real ip, the real host-device, veth NICs in namespaces (tests/support/simnode.py). Each test is one row
of the issue's table (row 5 belongs to route restore) or the impostor test of its "done when".
"""

import json
import os
import subprocess

import pytest

from tests.support.simnode import sh


def ok(call):
    assert call.rc == 0, f"rc={call.rc} stdout={call.stdout} stderr={call.stderr}"
    return call.json


def ns(path):
    return path.rsplit("/", 1)[1]


def records(node):
    d = os.path.join(node.state_dir, "attachments")
    return sorted(n for n in os.listdir(d) if n.endswith(".json")) if os.path.isdir(d) else []


def record(node, name):
    with open(os.path.join(node.state_dir, "attachments", name)) as f:
        return json.load(f)


def restored(node, nic):
    link = node.link(node.node, nic.name)
    return (link is not None and "UP" in link["flags"] and link["mtu"] == nic.mtu
            and node.addresses(node.node, nic.name) == {nic.v4, nic.v6})


def details(node, netns, name):
    found = node.ip_json(netns, "-d", "link", "show", "dev", name)
    return found[0] if found else None


def gc(node, network, valid):
    conf = node.conf("", "1.1.0")
    conf["name"] = network
    conf["cni.dev/valid-attachments"] = [{"containerID": c, "ifname": i} for c, i in valid]
    return node.cni("GC", conf)


def reconcile(node):
    node.sync_sysfs()
    return subprocess.run(["ip", "netns", "exec", node.node, node.plugin, "reconcile",
                           "--state-dir", node.state_dir, "--interval", "0"],
                          capture_output=True, text=True, timeout=60)


def rename(netns, old, new):
    sh("ip", "-n", netns, "link", "set", old, "down")
    sh("ip", "-n", netns, "link", "set", old, "name", new)


def impostor(netns, name, mac, alias, peer="inner"):
    """A veth the pod makes itself, dressed as the NIC: same name, MAC and alias."""
    sh("ip", "-n", netns, "link", "add", name, "type", "veth", "peer", "name", peer)
    sh("ip", "-n", netns, "link", "set", name, "address", mac)
    sh("ip", "-n", netns, "link", "set", name, "alias", alias)
    sh("ip", "-n", netns, "link", "set", name, "up")
    return details_of(netns, name)


def details_of(netns, name):
    out = sh("ip", "-n", netns, "-j", "-d", "addr", "show", "dev", name, check=False)
    if out.returncode != 0:
        return None
    link = json.loads(out.stdout)[0]
    return (link["ifname"], link["address"], link.get("ifalias"), link["ifindex"],
            sorted(a["local"] for a in link.get("addr_info", []) if a.get("scope") != "link"))


# -- row 1: a netns path reused by another pod; a DEL naming the node's own netns ----------

def test_a_late_del_whose_netns_path_now_holds_another_pod_takes_nothing_from_it(node):
    a, b = node.nics
    name = node.add_pod()
    path = node.netns_path(name)
    ok(node.cni("ADD", node.conf(a.pci), "c1", path, "net1"))
    # Pod A dies: its NIC comes home as net1 (what the kernel does with a physical NIC).
    sh("ip", "-n", name, "link", "set", "net1", "netns", node.node)
    node.remove_pod(name)
    sh("ip", "netns", "add", name)  # pod B gets the same path
    node.pods.append(name)
    ok(node.cni("ADD", node.conf(b.pci), "c2", path, "net1"))
    pod_b = details_of(name, "net1")

    ok(node.cni("DEL", node.conf(a.pci), "c1", path, "net1"))
    assert details_of(name, "net1") == pod_b  # pod B's NIC is untouched
    assert restored(node, a)                  # NIC A, home as net1, is restored by identity
    assert records(node) == ["c2@net1.json"]
    ok(node.cni("DEL", node.conf(b.pci), "c2", path, "net1"))
    assert restored(node, b)


def test_a_del_whose_netns_is_the_node_moves_nothing_out_of_it(node, pod):
    a, b = node.nics
    # CNI_IFNAME is the name of a node NIC: the old code took that NIC as "the pod's".
    ok(node.cni("ADD", node.conf(a.pci), "c1", pod, b.name))
    before = details_of(node.node, b.name)
    ok(node.cni("DEL", node.conf(a.pci), "c1", node.netns_path(node.node), b.name))
    assert details_of(node.node, b.name) == before and restored(node, b)
    assert node.link(ns(pod), b.name) is not None         # NIC A stays in its pod
    assert records(node) == [f"c1@{b.name}.json"]          # kept, and not marked orphaned
    assert record(node, f"c1@{b.name}.json")["orphanedSince"] == 0
    ok(node.cni("DEL", node.conf(a.pci), "c1", pod, b.name))  # the real DEL
    assert restored(node, a) and restored(node, b) and records(node) == []


# -- row 2 and the impostor test ------------------------------------------------------------

def test_a_renamed_nic_behind_an_impostor_is_found_and_only_it_is_taken(node, pod):
    a = node.nics[0]
    ok(node.cni("ADD", node.conf(a.pci), "c1", pod, "net1"))
    p = ns(pod)
    mac = node.link(p, "net1")["address"]
    rename(p, "net1", "hidden")
    sh("ip", "-n", p, "link", "set", "hidden", "address", "02:00:00:00:00:99")
    sh("ip", "-n", p, "link", "set", "hidden", "alias", "decoy")
    fake = impostor(p, "net1", mac, a.name)

    ok(node.cni("DEL", node.conf(a.pci), "c1", pod, "net1"))
    assert details_of(p, "net1") == fake and details_of(p, "inner") is not None
    assert restored(node, a) and node.link(p, "hidden") is None
    assert node.link(node.node, a.name)["address"] == mac
    assert node.ping(node.node, a.peer_v4)  # the real NIC, wired to the top of rack
    assert records(node) == []


def test_impostors_are_never_touched_by_del_gc_or_reconcile(node):
    a = node.nics[0]
    name = node.add_pod()
    path = node.netns_path(name)
    ok(node.cni("ADD", node.conf(a.pci), "c1", path, "net1"))
    mac = node.link(name, "net1")["address"]
    sh("ip", "-n", name, "link", "del", "net1")  # the real NIC is gone (a veth dies whole)
    fake = impostor(name, "net1", mac, a.name)
    fake_named = impostor(name, a.name, mac, a.name, peer="inner2")

    ok(node.cni("DEL", node.conf(a.pci), "c1", path, "net1"))
    ok(gc(node, "amd-host-device-nad", []))
    assert details_of(name, "net1") == fake and details_of(name, a.name) == fake_named
    assert records(node) == ["c1@net1.json"]  # nothing proves where the NIC is: kept

    # On the node: after the pod is gone, a link with the NIC's name and MAC appears.
    node.remove_pod(name)
    sh("ip", "-n", node.node, "link", "add", a.name, "type", "veth", "peer", "name", "nodepeer")
    sh("ip", "-n", node.node, "link", "set", a.name, "address", mac)
    on_node = details_of(node.node, a.name)
    out = reconcile(node)
    ok(node.cni("DEL", node.conf(a.pci), "c1", path, "net1"))
    ok(gc(node, "amd-host-device-nad", []))
    assert details_of(node.node, a.name) == on_node, out.stderr
    assert records(node) == ["c1@net1.json"]


# -- row 3: GC is per network ----------------------------------------------------------------

def test_gc_releases_only_attachments_of_its_own_network(node):
    a, b = node.nics
    pa, pb = (node.netns_path(node.add_pod()) for _ in range(2))
    ok(node.cni("ADD", node.conf(a.pci, name="nad-nic"), "ca", pa, "net1"))
    ok(node.cni("ADD", node.conf(b.pci, name="nad-vnic"), "cb", pb, "net1"))
    assert record(node, "ca@net1.json")["network"] == "nad-nic"

    ok(gc(node, "nad-nic", [("ca", "net1")]))
    assert node.addresses(ns(pb), "net1") == {b.v4, b.v6}  # another network's live pod
    assert records(node) == ["ca@net1.json", "cb@net1.json"]

    ok(gc(node, "nad-vnic", []))
    assert restored(node, b) and records(node) == ["ca@net1.json"]
    assert node.addresses(ns(pa), "net1") == {a.v4, a.v6}
    ok(node.cni("DEL", node.conf(a.pci, name="nad-nic"), "ca", pa, "net1"))
    assert restored(node, a)


# -- row 4: the node's uplinks ---------------------------------------------------------------

def refused(call, *words):
    assert call.rc != 0 and call.json["code"] == 7, call.stdout
    text = call.json["msg"] + " " + call.json.get("details", "")
    assert all(w in text for w in words), text


@pytest.mark.parametrize("family", ["4", "6"])
def test_a_multipath_default_route_through_the_nic_is_the_uplink(node, pod, untouched, family):
    a, b = node.nics
    gw_a, gw_b = (a.peer_v4, b.peer_v4) if family == "4" else (a.peer_v6, b.peer_v6)
    sh("ip", f"-{family}", "-n", node.node, "route", "add", "default",
       "nexthop", "via", gw_a, "dev", a.name, "nexthop", "via", gw_b, "dev", b.name)
    before = node.ip_json(node.node, f"-{family}", "route", "show", "default")
    refused(node.cni("ADD", node.conf(a.pci), "c1", pod, "net1"), a.name, "default route",
            "multipath")
    assert node.ip_json(node.node, f"-{family}", "route", "show", "default") == before
    assert restored(node, a) and records(node) == []


def test_a_default_route_through_a_nexthop_object_is_the_uplink(node, pod):
    a, b = node.nics
    sh("ip", "-n", node.node, "nexthop", "add", "id", "7", "via", a.peer_v4, "dev", a.name)
    sh("ip", "-n", node.node, "nexthop", "add", "id", "9", "via", b.peer_v4, "dev", b.name)
    sh("ip", "-n", node.node, "nexthop", "add", "id", "8", "group", "7/9")
    sh("ip", "-n", node.node, "route", "add", "default", "nhid", "8")
    refused(node.cni("ADD", node.conf(a.pci), "c1", pod, "net1"), a.name, "default route")
    assert restored(node, a) and records(node) == []


def bridge_uplink(node, nic, default_route=True):
    """The NIC as the port of br0, which carries the NIC's address and the default route."""
    sh("ip", "-n", node.node, "link", "add", "br0", "address", "02:00:00:00:0b:01", "type", "bridge")
    sh("ip", "-n", node.node, "addr", "flush", "dev", nic.name)
    sh("ip", "-n", node.node, "link", "set", nic.name, "master", "br0")
    sh("ip", "-n", node.node, "addr", "add", nic.v4, "dev", "br0")
    sh("ip", "-n", node.node, "link", "set", "br0", "up")
    if default_route:
        sh("ip", "-n", node.node, "route", "add", "default", "via", nic.peer_v4, "dev", "br0")


def test_a_default_route_through_the_bridge_the_nic_is_a_port_of_is_the_uplink(node, pod):
    a = node.nics[0]
    bridge_uplink(node, a)
    node.write_policy(allowPortDevices=True)  # a port may move; the uplink still may not
    refused(node.cni("ADD", node.conf(a.pci), "c1", pod, "net1"), a.name, "br0",
            "default route")
    assert details(node, node.node, a.name)["master"] == "br0" and records(node) == []
    assert node.ping(node.node, a.peer_v4)


def test_a_bridge_port_is_refused_by_default_naming_its_master(node, pod):
    a = node.nics[0]
    bridge_uplink(node, a, default_route=False)
    refused(node.cni("ADD", node.conf(a.pci), "c1", pod, "net1"), a.name, "port of br0",
            "allowPortDevices")
    assert details(node, node.node, a.name)["master"] == "br0" and records(node) == []


def test_with_the_opt_ins_a_bridge_port_moves_and_comes_back_a_port(node, pod):
    a = node.nics[0]
    bridge_uplink(node, a)
    node.write_policy(allowPortDevices=True, allowDefaultRouteDevice=True)
    ok(node.cni("ADD", node.conf(a.pci), "c1", pod, "net1"))
    assert record(node, "c1@net1.json")["master"] == "br0"
    assert node.link(ns(pod), "net1") is not None
    ok(node.cni("DEL", node.conf(a.pci), "c1", pod, "net1"))
    assert details(node, node.node, a.name)["master"] == "br0"
    assert node.ip_json(node.node, "route", "show", "default")[0]["dev"] == "br0"
    assert node.ping(node.node, a.peer_v4)  # the uplink works again


def test_names_swapped_under_host_device_never_give_the_node_config_to_an_impostor(
        node, pod, tmp_path):
    """host-device finds the link by name: a pod that swaps names between our look and its
    move sends an impostor home. What comes home is proven before it gets the NIC's config."""
    a = node.nics[0]
    ok(node.cni("ADD", node.conf(a.pci), "c1", pod, "net1"))
    p = ns(pod)
    impostor(p, "imp", node.link(p, "net1")["address"], a.name)
    d = tmp_path / "cni"
    d.mkdir()
    os.symlink("/usr/lib/cni/static", d / "static")
    enter = 'nsenter --net="$CNI_NETNS" ip link set'
    (d / "host-device").write_text(
        "#!/bin/sh\n"
        f'if [ "$CNI_COMMAND" = DEL ]; then {enter} net1 down; {enter} net1 name real; '
        f"{enter} imp name net1; fi\n"
        'exec /usr/lib/cni/host-device "$@"\n')
    (d / "host-device").chmod(0o755)
    call = node.cni("DEL", node.conf(a.pci), "c1", pod, "net1", cni_path=str(d))
    assert call.rc != 0 and call.json["code"] == 101, call.stdout
    assert node.addresses(node.node, a.name) == set()  # the impostor got nothing of the NIC's
    assert node.link(p, "real") is not None and records(node) == ["c1@net1.json"]
