"""Which interface is ours, which namespace is the pod, which records GC releases: table-driven
over `ip -d -j link show` recorded on veth NICs in namespaces (tests/data/identity/, made by
moving a veth NIC into a pod, hiding it behind an impostor and bringing it home), plus
constructed objects for what this machine cannot make (PCI NICs)."""

import json
import os

import pytest

from plugin import device, identity
from plugin.gc import gc_candidates
from plugin.giveback import PodView, choose_netns
from plugin.identity import Frame, NicIdentity
from plugin.snapshot import LinkSnapshot
from plugin.state import PHASE_ATTACHED, PHASE_MOVING, Record
from tests.support.request_env import use_env

DATA = os.path.join(os.path.dirname(__file__), "..", "data", "identity")


def load(name):
    with open(os.path.join(DATA, name + ".json")) as f:
        return json.load(f)


def link(name, ifname):
    return next(x for x in load(name) if x["ifname"] == ifname)


NODE_BEFORE = load("node_links_before")   # ens1f0, ens1f1 on the node, peers in the tor netns
POD_MOVED = load("pod_links_moved")       # ens1f0 moved into the pod as net1
POD_IMPOSTOR = load("pod_links_impostor")  # net1 renamed hidden, re-MAC'd; a veth net1 with
#                                            the NIC's MAC and alias; its peer "inner"
NODE_HOME = load("node_links_home")       # the NIC home again under its pod-side name "hidden"

RECORDED = identity.of_link(link("node_links_before", "ens1f0"), Frame.NODE)._replace(
    peer_pod=identity.veth_peer(link("pod_links_moved", "net1")))


def pci_link(ifname, pci, mac="aa:bb:cc:00:00:01", kind=""):
    obj = {"ifname": ifname, "address": mac, "parentbus": "pci", "parentdev": pci}
    if kind:
        obj["linkinfo"] = {"info_kind": kind}
    return obj


def veth(ifname, mac, index=None, nsid=None):
    obj = {"ifname": ifname, "address": mac, "linkinfo": {"info_kind": "veth"}}
    if index is not None:
        obj["link_index"] = index
    if nsid is not None:
        obj["link_netnsid"] = nsid
    return obj


def test_what_add_records_about_a_veth_nic():
    assert RECORDED.peer_node == "2:0" and RECORDED.peer_pod == "2:0"
    assert RECORDED.pci == "" and RECORDED.perm_mac == ""
    # a veth whose peer is in the same namespace (what a pod can make) proves nothing
    assert identity.veth_peer(link("pod_links_impostor", "net1")) == ""


CASES = [
    # (why, identity, links, frame, kwargs, expected)
    ("moved NIC in the pod, by its pod-side peer", RECORDED, POD_MOVED, Frame.POD, {}, "net1"),
    ("renamed and re-MAC'd behind an impostor", RECORDED, POD_IMPOSTOR, Frame.POD, {}, "hidden"),
    ("home under its pod-side name, by its node-side peer", RECORDED, NODE_HOME, Frame.NODE, {},
     "hidden"),
    ("on the node before the move", RECORDED, NODE_BEFORE, Frame.NODE, {}, "ens1f0"),
    ("no pod-side peer recorded and not fresh: unproven", RECORDED._replace(peer_pod=""),
     POD_MOVED, Frame.POD, {}, None),
    ("fresh record: name of the move and peer index", RECORDED._replace(peer_pod=""),
     POD_MOVED, Frame.POD, {"fresh": True, "names": ("net1", "ens1f0")}, "net1"),
    ("fresh record: the impostor carries the name but no peer", RECORDED._replace(peer_pod=""),
     POD_IMPOSTOR, Frame.POD, {"fresh": True, "names": ("net1", "ens1f0")}, None),
    ("a record that proves nothing takes nothing", NicIdentity(), POD_IMPOSTOR, Frame.POD,
     {"fresh": True, "names": ("net1",)}, None),
    ("peer compared within its frame only: pod value on the node", NicIdentity(peer_pod="2:0"),
     NODE_HOME, Frame.NODE, {}, None),
    ("same peer index, another peer namespace", NicIdentity(peer_pod="2:1"), POD_MOVED,
     Frame.POD, {}, None),
    ("PCI parent matches", NicIdentity(pci="0000:01:00.0"),
     [pci_link("net1", "0000:02:00.0"), pci_link("weird", "0000:01:00.0")], Frame.POD, {},
     "weird"),
    ("a pod veth with the NIC's name and MAC is not a PCI NIC", NicIdentity(pci="0000:01:00.0"),
     [veth("net1", "aa:bb:cc:00:00:01")], Frame.POD, {"names": ("net1",)}, None),
    ("another PCI function is never ours", NicIdentity(peer_pod="2:0"),
     [pci_link("net1", "0000:02:00.0", kind="veth") | {"link_index": 2, "link_netnsid": 0}],
     Frame.POD, {}, None),
    ("permanent MAC where ip shows no PCI parent", NicIdentity(perm_mac="aa:bb:cc:00:00:01"),
     [{"ifname": "eth9", "address": "02:00:00:00:00:01"}], Frame.POD,
     {"perm_macs": {"eth9": "aa:bb:cc:00:00:01"}}, "eth9"),
    ("the current MAC alone is no proof", NicIdentity(perm_mac="aa:bb:cc:00:00:01"),
     [{"ifname": "eth9", "address": "aa:bb:cc:00:00:01"}], Frame.POD, {}, None),
    ("two links prove it: not guessing", NicIdentity(pci="0000:01:00.0"),
     [pci_link("a1", "0000:01:00.0"), pci_link("a2", "0000:01:00.0")], Frame.NODE, {}, None),
    ("Go-plugin mapping: the name of another PCI function is refused",
     NicIdentity(pci="0000:01:00.0", legacy=True), [pci_link("ens1f0", "0000:07:00.0")],
     Frame.NODE, {"legacy_name": "ens1f0"}, None),
    ("Go-plugin mapping in a pod: its name proves nothing", NicIdentity(legacy=True),
     POD_MOVED, Frame.POD, {"names": ("net1", "ens1f0")}, None),
]


@pytest.mark.parametrize("why,ident,links,frame,kwargs,expected", CASES,
                         ids=[c[0] for c in CASES])
def test_which_interface_is_ours(why, ident, links, frame, kwargs, expected):
    found, _ = identity.find(ident, links, frame, **kwargs)
    assert (found["ifname"] if found else None) == expected


LEGACY = NicIdentity(pci="0000:01:00.0", legacy=True)
LEGACY_CASES = [
    # (why, identity, sysfs: {pci: netdevs}, class/net/<name>/device -> pci, links, expected)
    ("its name, listed under its PCI function", LEGACY, {"0000:01:00.0": ["ens1f0"]}, {},
     NODE_BEFORE, "ens1f0"),
    ("its name, whose class/net device is its PCI function", LEGACY, {},
     {"ens1f0": "0000:01:00.0"}, NODE_BEFORE, "ens1f0"),
    ("its name, listed under another PCI function", LEGACY, {"0000:07:00.0": ["ens1f0"]},
     {"ens1f0": "0000:07:00.0"}, NODE_BEFORE, None),
    ("a link of its name that sysfs lists nowhere (lo, a bridge, a tunnel)", LEGACY,
     {"0000:01:00.0": ["ens1f1"]}, {}, NODE_BEFORE, None),
    ("a mapping keyed by a name, not a PCI address, proves nothing",
     NicIdentity(pci="name:ens1f0", legacy=True), {"0000:01:00.0": ["ens1f0"]}, {},
     NODE_BEFORE, None),
    ("ip names another PCI parent", LEGACY, {},
     {}, [pci_link("ens1f0", "0000:07:00.0")], None),
    ("ip's PCI parent is the mapping's", LEGACY, {}, {}, [pci_link("ens1f0", "0000:01:00.0")],
     "ens1f0"),
]


@pytest.mark.parametrize("why,ident,listed,class_net,links,expected", LEGACY_CASES,
                         ids=[c[0] for c in LEGACY_CASES])
def test_a_legacy_mappings_link_on_the_node_is_proven_by_sysfs(
        why, ident, listed, class_net, links, expected, tmp_path, monkeypatch):
    """AMD's Go plugin recorded a PCI address and a name: on the node the link of that name is
    its NIC only when the node's sysfs says so, never by the name alone."""
    use_env(monkeypatch, device.SYSFS_ENV, str(tmp_path))
    for pci, names in listed.items():
        for name in names:
            (tmp_path / "bus" / "pci" / "devices" / pci / "net" / name).mkdir(parents=True)
    for name, pci in class_net.items():
        (tmp_path / "class" / "net" / name).mkdir(parents=True)
        os.symlink(f"../../../devices/pci0000:00/{pci}", tmp_path / "class" / "net" / name /
                   "device")
    found, why_not = identity.find(ident, links, Frame.NODE, legacy_name="ens1f0")
    assert (found["ifname"] if found else None) == expected
    assert found or any(w.startswith("ens1f0: ") for w in why_not)


def test_refusals_say_why():
    _, why = identity.find(RECORDED, POD_IMPOSTOR, Frame.POD, names=("net1", "ens1f0"))
    assert why == ["net1: veth peer none is not 2:0 (pod view)"]


@pytest.mark.parametrize("obj", [
    {"pci": "../../etc"}, {"permMac": "zz"}, {"peerNode": "2:0\nnetns exec x"},
    {"peerPod": 5}, [], "x"])
def test_a_recorded_identity_is_validated(obj):
    with pytest.raises(ValueError):
        NicIdentity.from_json(obj)


SNAP = LinkSnapshot("ens1f0", "aa:bb:cc:00:00:01", 9000, True, (), ())


def rec(cid="c1", network="", netns_id="4:100", **kw):
    return Record(cid, "net1", "0000:01:00.0", "0000:01:00.0", "/run/netns/p", PHASE_ATTACHED,
                  SNAP, None, 1.0, netns_id, network=network, **kw)


def test_a_record_round_trips_and_bad_new_fields_are_corrupt():
    r = rec(network="nad-nic", pod="ns1/pod1", master="br0", uppers=("vlan10",),
            identity=RECORDED)
    assert Record.from_json(json.loads(json.dumps(r.to_json()))) == r
    for key, bad in (("master", "br 0"), ("uppers", ["a b"]), ("network", 5)):
        obj = r.to_json() | {key: bad}
        with pytest.raises(ValueError):
            Record.from_json(obj)
    old = {k: v for k, v in r.to_json().items()
           if k not in ("identity", "network", "pod", "master", "uppers")}
    # Before 0.1.0 recorded identity: its PCI address, and the Go plugin's rule on the node
    # (plugin/formats.py upgrade).
    assert Record.from_json(old) == r._replace(identity=NicIdentity(pci="0000:01:00.0",
                                                                    legacy=True),
                                            network="", pod="", master="", uppers=())


NODE_NS = "4:1"
NETNS_CASES = [
    # (why, record netns id, CNI_NETNS, its id, recorded path's id now, expected)
    ("the recorded pod", "4:100", "/run/netns/p", "4:100", "4:100", PodView("/run/netns/p")),
    ("same namespace, another path", "4:100", "/proc/9/ns/net", "4:100", "4:100",
     PodView("/proc/9/ns/net")),
    ("a path reused by another pod", "4:100", "/run/netns/p", "4:200", "4:200",
     PodView("", "another namespace", True)),
    ("the node's own netns", "4:100", "/run/netns/node", NODE_NS, "4:100",
     PodView("", "node's own netns", False)),
    ("CNI_NETNS gone", "4:100", "/run/netns/p", "", "", PodView("", "", True)),
    ("no CNI_NETNS: the recorded path while it is the same namespace", "4:100", "", "",
     "4:100", PodView("/run/netns/p")),
    ("no CNI_NETNS, recorded path reused", "4:100", "", "", "4:300", PodView("", "", True)),
    ("no netns recorded (older record): CNI_NETNS, identity still checked per link", "",
     "/run/netns/p", "4:500", "4:500", PodView("/run/netns/p")),
    ("a record naming the node's netns is not looked into", "", "", "", NODE_NS,
     PodView("", "", False)),
]


@pytest.mark.parametrize("why,netns_id,env,env_id,recorded_id,expected", NETNS_CASES,
                         ids=[c[0] for c in NETNS_CASES])
def test_which_namespace_is_the_pod(why, netns_id, env, env_id, recorded_id, expected):
    view = choose_netns(rec(netns_id=netns_id), env, env_id, recorded_id, NODE_NS)
    assert (view.path, view.pod_gone) == (expected.path, expected.pod_gone)
    assert expected.why in view.why and bool(view.why) == bool(expected.why)


def test_a_cni_netns_that_is_no_network_namespace_is_not_the_pod():
    """A path that exists but is no network namespace (a FIFO, /proc/self/ns/mnt) has no
    identity: it is never looked into, and the NIC is looked for on the node only."""
    view = choose_netns(rec(), "/run/initctl", "", "4:100", NODE_NS, env_present=True)
    assert view == PodView("", view.why, False) and "not a network namespace" in view.why
    view = choose_netns(rec(), "/run/initctl", "", "", NODE_NS, env_present=True)
    assert view.path == "" and view.pod_gone and "not a network namespace" in view.why


GC_CASES = [
    # (why, records (container, network), network, valid, released)
    ("not valid, own network", [("c1", "nad-nic")], "nad-nic", set(), ["c1"]),
    ("valid", [("c1", "nad-nic")], "nad-nic", {("c1", "net1")}, []),
    ("another network's live pod", [("c1", "nad-nic"), ("c2", "nad-vnic")], "nad-nic",
     {("c1", "net1")}, []),
    ("another network, not valid here either", [("c2", "nad-vnic")], "nad-nic", set(), []),
    ("no network recorded (older record): not GC's to judge", [("c3", "")], "nad-nic", set(),
     []),
    ("mixed", [("c1", "n"), ("c2", "n"), ("c3", "m")], "n", {("c2", "net1")}, ["c1"]),
]


@pytest.mark.parametrize("why,records,network,valid,released", GC_CASES,
                         ids=[c[0] for c in GC_CASES])
def test_which_records_gc_releases(why, records, network, valid, released):
    rs = [rec(cid, net) for cid, net in records]
    out, other = gc_candidates(rs, network, valid)
    assert [r.container_id for r in out] == released
    assert len(out) + len(other) <= len(rs)


def test_a_record_still_moving_is_the_only_one_judged_by_name():
    moving = rec(identity=RECORDED._replace(peer_pod=""))._replace(phase=PHASE_MOVING)
    assert moving.phase == PHASE_MOVING
    ev = identity.judge(moving.identity, link("pod_links_moved", "net1"), Frame.POD,
                        names=("net1",), fresh=True)
    assert ev.proven
    ev = identity.judge(moving.identity, link("pod_links_moved", "net1"), Frame.POD,
                        names=("net1",), fresh=False)
    assert not ev.proven
