"""Red team, after issues 10 and 11 landed: attacks that still succeed, one test each.

Each test fails on the code it was written against and passes once the hole is closed. Real
ip, the real host-device, veth NICs in namespaces (tests/support/simnode.py); the simulated node and its
pods are deleted afterwards even on failure. Attackers: a tenant who writes the NAD, a pod with
NET_ADMIN, and a hostile disk (records, AMD's legacy mappings).
"""

import contextlib
import json
import os
import threading

import pytest

from tests.support.checks import attachments, edit_record, gc_call, ns, ok, reconcile, records, restored
from tests.support.simnode import sh


def flags(node, nic):
    return node.link(node.node, nic.name)["flags"]


def node_links(node):
    return sorted(x["ifname"] for x in node.ip_json(node.node, "link"))


# -- the NAD --------------------------------------------------------------------------------

def test_a_long_network_name_never_loses_the_nic(node, pod):
    """`name` is stored in the record, which reads back only names of <= 317 printable
    characters: a 318-character name (libcni's name rule has no length limit, host-device
    takes it) made DEL set the record aside as corrupt and leave the NIC in the pod for good."""
    nic = node.nics[0]
    conf = node.conf(nic.pci, name="n" * 318)
    call = node.cni("ADD", conf, "c1", pod, "net1")
    if call.rc != 0:  # refusing the name up front is a fix too
        assert call.json["code"] == 7 and "name" in call.json["msg"], call.stdout
        assert restored(node, nic) and records(node) == []
        return
    ok(node.cni("DEL", conf, "c1", pod, "net1"))
    assert restored(node, nic), "the NIC was never given back"
    assert records(node) == []
    assert not [n for n in os.listdir(attachments(node)) if ".corrupt." in n]


def test_a_nads_literal_runtime_config_cannot_override_the_allocated_device(node, pod):
    """Multus injects the device plugin's allocation as top-level `deviceID`/`pciBusID`;
    libcni leaves a NAD's literal `runtimeConfig` alone unless the NAD declares capabilities.
    runtimeConfig.deviceID won over the injected key, so a tenant picked any NIC (another pod's
    allocation) while holding a different one in the scheduler's books."""
    a, b = node.nics
    conf = node.conf(a.pci, runtimeConfig={"deviceID": b.pci})  # A: what Multus injected
    call = node.cni("ADD", conf, "c1", pod, "net1")
    assert restored(node, b), "a NIC the device plugin did not allocate was taken"
    if call.rc == 0:
        ok(node.cni("DEL", conf, "c1", pod, "net1"))
    else:
        assert call.json["code"] == 7, call.stdout
    assert restored(node, a) and records(node) == []


def test_nad_ipam_cannot_create_links_on_the_node(node, pod, untouched):
    """`ipam.type` runs any CNI plugin in CNI_PATH, as root, in the node's netns, with a config
    we built: `bridge` creates (and leaves) `cni0` on the node before it fails."""
    nic = node.nics[0]
    before = node_links(node)
    call = node.cni("ADD", node.conf(nic.pci, ipam={"type": "bridge"}), "c1", pod, "net1")
    assert call.rc != 0
    assert node_links(node) == before, "the NAD's ipam plugin created links on the node"
    untouched()


def test_nad_ipam_type_is_not_an_arbitrary_plugin(node, pod, tmp_path):
    """The real `ptp` as `ipam.type` runs itself as its own IPAM without end (~250 processes a
    second; the delegate timeout kills host-device only, the chain goes on): a fork bomb from
    one NAD. A stand-in `ptp` that only leaves a mark shows the NAD chose what runs; the real
    host-device and static are used."""
    nic = node.nics[0]
    cni = tmp_path / "cni"
    cni.mkdir()
    for name in ("host-device", "static"):
        os.symlink(f"/usr/lib/cni/{name}", cni / name)
    mark = tmp_path / "ptp-ran"
    (cni / "ptp").write_text(f"#!/bin/sh\ntouch {mark}\n"
                             'echo \'{"cniVersion":"1.0.0","code":7,"msg":"stand-in"}\'\n'
                             "exit 1\n")
    (cni / "ptp").chmod(0o755)
    call = node.cni("ADD", node.conf(nic.pci, ipam={"type": "ptp"}), "c1", pod, "net1",
                    cni_path=str(cni))
    assert not mark.exists(), "a NAD picked a CNI plugin for the node to run as root"
    assert call.rc != 0 and restored(node, nic) and records(node) == []


def test_nad_ipam_cannot_write_files_on_the_node(node, pod, tmp_path):
    """host-local as the NAD's ipam writes its leases under the NAD's `dataDir`: any
    directory on the node, created as root (the state dir is node policy, this is not)."""
    nic = node.nics[0]
    outside = tmp_path / "etc-somewhere"
    conf = node.conf(nic.pci, ipam={"type": "host-local", "dataDir": str(outside),
                                    "ranges": [[{"subnet": "10.250.0.0/24"}]]})
    call = node.cni("ADD", conf, "c1", pod, "net1")
    if call.rc == 0:
        ok(node.cni("DEL", conf, "c1", pod, "net1"))
    assert not outside.exists(), "the NAD's ipam wrote files outside the state dir"
    assert restored(node, nic) and records(node) == []


# -- the pod --------------------------------------------------------------------------------

def test_a_pod_squatting_the_nics_node_name_cannot_wedge_del(node, pod):
    """host-device renames the NIC to its alias (the node name) *inside the pod* before the
    move: a pod interface already holding that name made every DEL fail with code 100 (pod
    stuck Terminating, NIC never back)."""
    nic = node.nics[0]
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    sh("ip", "-n", ns(pod), "link", "add", nic.name, "type", "veth", "peer", "name", "sq")
    call = node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1")
    assert call.rc == 0, call.stdout
    assert restored(node, nic) and records(node) == []
    assert node.link(ns(pod), nic.name) is not None  # the pod's own veth is left alone


def test_a_pod_giving_the_nic_a_node_nics_name_as_altname_cannot_wedge_del(node, pod):
    """An altname moves with the link: one equal to a node interface's name made the move
    home fail with EEXIST on every DEL."""
    a, b = node.nics
    ok(node.cni("ADD", node.conf(a.pci), "c1", pod, "net1"))
    sh("ip", "-n", ns(pod), "link", "property", "add", "dev", "net1", "altname", b.name)
    call = node.cni("DEL", node.conf(a.pci), "c1", pod, "net1")
    assert call.rc == 0, call.stdout
    assert restored(node, a) and restored(node, b) and records(node) == []


def test_a_pod_renaming_the_nic_unsafely_cannot_choose_its_alias(node, pod):
    """_reset_alias skips a link whose name no batch line may carry (`a#b`), so host-device
    then renames the NIC to the alias the pod chose; a node NIC's name there made every DEL
    fail with EEXIST (and the NIC is lost when the pod goes)."""
    a, b = node.nics
    ok(node.cni("ADD", node.conf(a.pci), "c1", pod, "net1"))
    p = ns(pod)
    sh("ip", "-n", p, "link", "set", "net1", "down")
    sh("ip", "-n", p, "link", "set", "net1", "name", "a#b")
    sh("ip", "-n", p, "link", "set", "a#b", "alias", b.name)
    call = node.cni("DEL", node.conf(a.pci), "c1", pod, "net1")
    assert call.rc == 0, call.stdout
    assert restored(node, a) and restored(node, b) and records(node) == []


def test_altnames_the_pod_added_do_not_come_home(node, pod):
    """An altname the pod chose came home with the NIC: `ip ... dev cni0` on the node then
    acts on the NIC, and the node's own cni0 cannot be created."""
    nic = node.nics[0]
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    sh("ip", "-n", ns(pod), "link", "property", "add", "dev", "net1", "altname", "cni0")
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))
    assert restored(node, nic)
    assert node.link(node.node, "cni0") is None, "the pod's altname names a node NIC"


def test_link_flags_the_pod_set_do_not_come_home(node, pod):
    """`arp off` / `multicast off` in the pod survive the move: the NIC came home UP with its
    addresses and routes, and could reach nothing (no ARP, no IPv6 neighbour discovery)."""
    nic = node.nics[0]
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    sh("ip", "-n", ns(pod), "link", "set", "net1", "arp", "off", "multicast", "off")
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))
    assert restored(node, nic)
    assert "NOARP" not in flags(node, nic) and "MULTICAST" in flags(node, nic)
    assert node.ping(node.node, nic.peer_v4) and node.ping(node.node, nic.peer_v6)


def _settings(node, nic):
    link = node.ip_json(node.node, "-d", "link", "show", "dev", nic.name)[0]
    offloads = sh("ip", "netns", "exec", node.node, "ethtool", "-k", nic.name).stdout
    return (link.get("txqlen"), link.get("group"), link.get("gso_max_size"),
            sorted(x.strip() for x in offloads.splitlines() if "[fixed]" not in x))


def test_link_settings_the_pod_changed_do_not_come_home(node, pod):
    """txqueuelen, group, GSO size and offloads (`ethtool -K`) set in the pod stay on the node
    NIC after DEL: a pod can leave the node a crippled NIC (e.g. txqueuelen 1, no checksum
    offload) that looks restored."""
    nic = node.nics[0]
    before = _settings(node, nic)
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    sh("ip", "-n", ns(pod), "link", "set", "net1", "txqueuelen", "1", "gso_max_size", "1500",
       "group", "7")
    sh("ip", "netns", "exec", ns(pod), "ethtool", "-K", "net1", "tx", "off", "rx", "off")
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))
    assert restored(node, nic)
    assert _settings(node, nic) == before


# -- the disk -------------------------------------------------------------------------------

def _unblocking(fifo, call):
    """Run `call` in a thread; if it has not returned in 20 s it is hung in open() of the
    FIFO (nsenter/ip): open the FIFO for writing until it returns, so nothing is left behind.
    Returns (hung, result)."""
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", call()), daemon=True)
    t.start()
    t.join(20)
    hung = t.is_alive()
    while t.is_alive():
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        t.join(0.1)
    return hung, out.get("r")


@pytest.mark.parametrize("command", ["DEL", "GC"])
def test_a_record_whose_netns_is_a_fifo_never_hangs(node, pod, tmp_path, command):
    """A record's `netns` is checked only as an absolute path: a FIFO there (any FIFO on the
    node, e.g. /run/initctl) made nsenter block in open() for ever, in DEL (when the runtime
    sends no CNI_NETNS) and in GC, which then stopped every other attachment's GC too."""
    nic = node.nics[0]
    ok(node.cni("ADD", node.conf(nic.pci, "1.1.0"), "c1", pod, "net1"))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def change(obj):
        obj["netns"], obj["netnsID"] = str(fifo), ""
    edit_record(node, "c1@net1.json", change)
    if command == "DEL":
        hung, call = _unblocking(fifo, lambda: node.cni("DEL", node.conf(nic.pci, "1.1.0"),
                                                        "c1", "", "net1", timeout=300))
    else:
        hung, call = _unblocking(fifo, lambda: gc_call(node, [], extra_env=None))
    assert not hung, f"{command} hung on a FIFO named as the pod's netns"
    assert call is not None and (call.rc == 0 or "code" in call.json), call
    assert node.link(ns(pod), "net1") is not None  # never touched on the strength of it
    # The runtime's real DEL still gives the NIC back.
    ok(node.cni("DEL", node.conf(nic.pci, "1.1.0"), "c1", pod, "net1"))
    assert restored(node, nic)


@pytest.mark.parametrize("sweep", ["gc", "reconcile"])
def test_a_legacy_mapping_never_configures_a_link_that_is_not_its_nic(node, sweep):
    """AMD's mapping names its NIC only by hostInterfaceName; a link of that name with no PCI
    parent (lo, a bridge, a bond, a tunnel) was taken as the NIC on the node: GC and
    reconcile gave `lo` the node's gateway address, so the node lost its gateway."""
    a, b = node.nics
    os.makedirs(node.state_dir, mode=0o700)
    with open(os.path.join(node.state_dir, "ip-interface-mappings.json"), "w") as f:
        json.dump({b.pci: {"hostInterfaceName": "lo", "state": "UP",
                           "hostInterfaceIPs": [f"{a.peer_v4}/32", "10.77.0.1/32"]}}, f)
    before = node.addresses(node.node, "lo")
    if sweep == "gc":
        ok(gc_call(node, []))
    else:
        reconcile(node)
    assert node.addresses(node.node, "lo") == before, "a mapping configured lo"
    route = sh("ip", "-n", node.node, "route", "get", a.peer_v4).stdout
    assert not route.startswith("local"), route


def test_a_device_index_pointing_at_another_devices_record_does_not_block_the_nic(node):
    """devices/<A> -> the record of an attachment holding B: every ADD of A failed with code
    103 naming B's attachment, for ever (the index is never set aside or corrected)."""
    a, b = node.nics
    p1, p2 = (node.netns_path(node.add_pod()) for _ in range(2))
    ok(node.cni("ADD", node.conf(b.pci), "c2", p2, "net1"))
    os.symlink("../attachments/c2@net1.json", os.path.join(node.state_dir, "devices", a.pci))
    ok(node.cni("ADD", node.conf(a.pci), "c1", p1, "net1"))
    assert node.addresses(ns(p2), "net1") == {b.v4, b.v6}  # B's attachment untouched
    ok(node.cni("DEL", node.conf(a.pci), "c1", p1, "net1"))
    ok(node.cni("DEL", node.conf(b.pci), "c2", p2, "net1"))
    assert restored(node, a) and restored(node, b) and records(node) == []
