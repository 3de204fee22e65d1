"""The trust boundary (issue 10), one test per attack: nothing in a NAD, a state file, AMD's
legacy mappings or a pod can harm the node. Real ip, real host-device, namespaces; each test
fails on the code before the fix."""

import json
import os
import stat

import pytest

from tests.support.checks import (
    attachments,
    edit_record,
    gc_call,
    logging_ip,
    ns,
    ok,
    reconcile,
    records,
    restored,
)
from tests.support.grammar import violations
from tests.support.simnode import sh

INJECT = "\nnetns exec {ns} /usr/bin/touch {file}\n"


# -- 1. a NAD's stateDir is not the node's: nothing created or chmod'ed -----------------------

@pytest.mark.parametrize("nad_dir", ["shared", "/", "/etc", "/run"])
def test_nad_state_dir_creates_and_chmods_nothing(node, pod, tmp_path, untouched, nad_dir):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    target = str(shared) if nad_dir == "shared" else nad_dir
    before = {p: (os.stat(p).st_mode, sorted(os.listdir(p))) for p in (target,)}
    call = node.cni("ADD", node.conf("", device="nosuch0", stateDir=target), "c1", pod, "net1")
    assert call.rc != 0 and call.json["code"] == 7
    assert "stateDir" in call.json["msg"] and "node policy" in call.json["details"]
    assert {p: (os.stat(p).st_mode, sorted(os.listdir(p))) for p in (target,)} == before
    assert not os.path.exists(node.state_dir)  # not even the node's own dir on a refusal
    untouched()


def test_nad_may_repeat_the_node_state_dir(node, pod):
    nic = node.nics[0]
    ok(node.cni("ADD", node.conf(nic.pci, stateDir=node.state_dir), "c1", pod, "net1"))
    ok(node.cni("DEL", node.conf(nic.pci, stateDir=node.state_dir), "c1", pod, "net1"))
    assert restored(node, nic)


# -- 2. injected ip -batch lines in a record or a legacy mapping ------------------------------

@pytest.mark.parametrize("where", ["address", "name", "route", "label", "mtu", "scope-id"])
def test_record_injection_never_reaches_ip(node, pod, tmp_path, where):
    nic = node.nics[0]
    sh("ip", "-n", node.node, "route", "add", "10.99.0.0/24", "via", nic.peer_v4)
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    proof = tmp_path / "pwned"
    evil = INJECT.format(ns=node.node, file=proof)

    def change(obj):
        snap = obj["snapshot"]
        if where == "address":
            snap["addresses"][0]["local"] += evil
        elif where == "name":
            snap["name"] += evil
        elif where == "route":
            next(r for r in snap["routes"] if r["dst"] == "10.99.0.0/24")["dst"] += evil
        elif where == "scope-id":  # ipaddress takes anything after '%' as an IPv6 scope ID
            next(r for r in snap["routes"] if r["dst"] == "10.99.0.0/24")["gateway"] = \
                "fe80::1%x" + evil
        elif where == "label":
            snap["addresses"][0]["label"] = "ens1f0" + evil
        else:
            snap["mtu"] = f"1500{evil}"
    edit_record(node, "c1@net1.json", change)
    call = node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1")
    assert not proof.exists(), "a line from the record ran as an ip command"
    assert call.rc == 0, call.stdout
    assert "unusable" in call.stderr and "c1@net1.json" in call.stderr
    assert any(".corrupt." in n for n in os.listdir(attachments(node)))
    # Never touched on the strength of a bad record: the NIC is still in the pod.
    assert node.link(ns(pod), "net1") is not None


def test_legacy_mapping_injection_never_reaches_ip(node, pod, tmp_path):
    nic = node.nics[0]
    proof = tmp_path / "pwned"
    os.makedirs(node.state_dir, mode=0o700)
    path = os.path.join(node.state_dir, "ip-interface-mappings.json")
    with open(path, "w") as f:
        json.dump({nic.pci: {"hostInterfaceName": nic.name + INJECT.format(ns=node.node,
                                                                          file=proof),
                             "hostInterfaceIPs": [nic.v4], "state": "UP"}}, f)
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    assert not proof.exists()
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))
    assert not proof.exists() and restored(node, nic)


# -- 3. symlinks planted in the state dir ------------------------------------------------------

def test_planted_device_index_symlink_is_not_followed(node, pod, tmp_path):
    nic = node.nics[0]
    victim = tmp_path / "victim"
    victim.write_text("precious")
    for d in ("attachments", "devices", "locks"):
        os.makedirs(os.path.join(node.state_dir, d), mode=0o700, exist_ok=True)
    os.symlink(victim, os.path.join(node.state_dir, "devices", nic.pci))
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    assert victim.read_text() == "precious"
    assert not [n for n in os.listdir(tmp_path) if n.startswith("victim.")]
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))
    assert restored(node, nic)


def test_planted_record_and_lock_symlinks_are_set_aside_not_followed(node, pod, tmp_path):
    nic = node.nics[0]
    victim = tmp_path / "victim"
    victim.write_text("precious")
    for d in ("attachments", "devices", "locks"):
        os.makedirs(os.path.join(node.state_dir, d), mode=0o700, exist_ok=True)
    os.symlink(victim, attachments(node) / "c1@net1.json")
    os.symlink(victim, os.path.join(node.state_dir, "locks", f"{nic.pci}.lock"))
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    assert victim.read_text() == "precious" and stat.S_IMODE(victim.stat().st_mode) == 0o644
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))
    assert restored(node, nic) and victim.read_text() == "precious"


def test_status_probe_names_cannot_be_planted(node, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    os.makedirs(node.state_dir, mode=0o700)
    with open("/proc/sys/kernel/ns_last_pid") as f:
        last = int(f.read())
    for pid in range(last + 1, last + 3000):  # every PID the plugin could get soon
        os.symlink(victim, os.path.join(node.state_dir, f".status.{pid}"))
    ok(node.cni("STATUS", node.conf("", "1.1.0")))
    assert victim.read_text() == "precious"


@pytest.mark.parametrize("bad", ["symlink", "not-ours"])
def test_state_dir_that_is_not_ours_is_refused(node, pod, tmp_path, bad, untouched):
    nic = node.nics[0]
    real = tmp_path / "elsewhere"
    real.mkdir(mode=0o700)
    if bad == "symlink":
        os.symlink(real, node.state_dir)
    else:
        os.mkdir(node.state_dir, 0o700)
        os.chown(node.state_dir, 65534, 65534)
    call = node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1")
    assert call.rc != 0 and call.json["code"] == 5 and node.state_dir in call.json["msg"]
    assert os.listdir(real) == []
    if bad == "not-ours":
        assert os.stat(node.state_dir).st_uid == 65534
        os.rmdir(node.state_dir)
    untouched()


# -- 4. a record that is a FIFO or a directory -------------------------------------------------

@pytest.mark.parametrize("kind", ["fifo", "dir"])
def test_fifo_or_dir_record_never_hangs_or_stops_a_sweep(node, tmp_path, kind):
    a, b = node.nics
    p1, p2 = (node.netns_path(node.add_pod()) for _ in range(2))
    ok(node.cni("ADD", node.conf(a.pci, "1.1.0"), "c1", p1, "net1"))
    ok(node.cni("ADD", node.conf(b.pci, "1.1.0"), "c2", p2, "net1"))
    bad = attachments(node) / "c0@net1.json"
    os.mkfifo(bad) if kind == "fifo" else bad.mkdir()
    ok(node.cni("DEL", node.conf("", "1.1.0"), "c0", p1, "net1", timeout=30))
    bad2 = attachments(node) / "c3@net1.json"
    os.mkfifo(bad2) if kind == "fifo" else bad2.mkdir()
    out = reconcile(node)  # both pods alive: nothing to do, and no hang
    assert out.returncode == 0, out.stderr
    bad4 = attachments(node) / "c4@net1.json"
    os.mkfifo(bad4) if kind == "fifo" else bad4.mkdir()
    ok(gc_call(node, [{"containerID": "c1", "ifname": "net1"}]))
    assert restored(node, b) and records(node) == ["c1@net1.json"]
    assert sum(".corrupt." in n for n in os.listdir(attachments(node))) == 3


# -- 5. `device` naming another pod's veth ----------------------------------------------------

def test_device_name_of_a_veth_is_refused(node, pod, untouched):
    victim = node.add_pod()
    sh("ip", "-n", node.node, "link", "add", "cali0a1b2c3d4e", "type", "veth", "peer", "name",
       "eth0", "netns", victim)
    call = node.cni("ADD", node.conf("", device="cali0a1b2c3d4e"), "c1", pod, "net1")
    assert call.rc != 0 and call.json["code"] == 7
    assert "cali0a1b2c3d4e" in call.json["msg"] and "PCI" in call.json["msg"]
    assert node.link(node.node, "cali0a1b2c3d4e") is not None
    assert node.link(ns(pod), "net1") is None
    sh("ip", "-n", node.node, "link", "del", "cali0a1b2c3d4e")
    untouched()


def test_device_name_of_a_pci_nic_still_works(node, pod):
    nic = node.nics[0]
    ok(node.cni("ADD", node.conf("", device=nic.name), "c1", pod, "net1"))
    ok(node.cni("DEL", node.conf("", device=nic.name), "c1", pod, "net1"))
    assert restored(node, nic)


# -- 6. long container IDs --------------------------------------------------------------------

@pytest.mark.parametrize("length", [250, 255])
def test_long_container_id_round_trips(node, pod, length):
    nic = node.nics[0]
    cid = "c" * length
    ok(node.cni("ADD", node.conf(nic.pci), cid, pod, "net1"))
    names = records(node)
    assert len(names) == 1 and len(names[0].encode()) <= 255
    with open(attachments(node) / names[0]) as f:
        assert json.load(f)["containerID"] == cid
    ok(node.cni("DEL", node.conf(nic.pci), cid, pod, "net1"))
    assert restored(node, nic) and records(node) == []


# -- 8. an unsafe netdev name in sysfs gets its own message -----------------------------------

def test_unsafe_sysfs_netdev_name_is_named(node, pod, untouched):
    node.add_pci("0000:09:00.0", "a#b")
    call = node.cni("ADD", node.conf("0000:09:00.0"), "c1", pod, "net1")
    assert call.rc != 0 and call.json["code"] == 7
    assert "'a#b'" in call.json["msg"] and "no network interface" not in call.json["msg"]
    untouched()


# -- beyond the table --------------------------------------------------------------------------

def test_concurrent_planted_temp_names_do_not_redirect_writes(node, pod, tmp_path):
    """Old temp names were `<file>.tmp.<pid>`: a planted symlink there redirected the write."""
    nic = node.nics[0]
    victim = tmp_path / "victim"
    victim.write_text("precious")
    os.makedirs(attachments(node), mode=0o700)
    os.chmod(node.state_dir, 0o700)
    with open("/proc/sys/kernel/ns_last_pid") as f:
        last = int(f.read())
    for pid in range(last + 1, last + 3000):
        os.symlink(victim, attachments(node) / f"c1@net1.json.tmp.{pid}")
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    assert victim.read_text() == "precious"
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))
    assert restored(node, nic)


# -- the wrapper sees only the plugin's grammar in an ordinary life cycle --------------------

def test_an_ordinary_life_cycle_speaks_only_the_grammar(node, pod, tmp_path):
    nic = node.nics[0]
    log = tmp_path / "ip.log"
    env = logging_ip(tmp_path / "bin", log)
    sh("ip", "-n", node.node, "route", "add", "10.99.0.0/24", "via", nic.peer_v4, "table", "100")
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1", extra_env=env))
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1", extra_env=env))
    assert restored(node, nic)
    text = log.read_text()
    assert "L route replace 10.99.0.0/24" in text  # the wrapper did see the batch
    assert violations(text) == []



def test_a_nic_the_pod_renamed_unsafely_still_comes_home(node):
    """The pod names its NIC `a#b` (the kernel allows it; ip -batch would read a comment)
    and its netns dies with the NIC sent home under that name: DEL renames it by argv."""
    nic = node.nics[0]
    pod = node.add_pod()
    ok(node.cni("ADD", node.conf(nic.pci), "c1", node.netns_path(pod), "net1"))
    sh("ip", "-n", pod, "link", "set", "net1", "down")
    sh("ip", "-n", pod, "link", "set", "net1", "name", "a#b")
    sh("ip", "-n", pod, "link", "set", "a#b", "netns", node.node)
    node.remove_pod(pod)
    ok(node.cni("DEL", node.conf(nic.pci), "c1", node.netns_path(pod), "net1"))
    assert restored(node, nic) and node.link(node.node, "a#b") is None
    assert records(node) == []


def test_a_symlinked_state_dir_is_not_read_through_on_del(node, pod, tmp_path):
    nic = node.nics[0]
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    real = tmp_path / "moved"
    os.rename(node.state_dir, real)
    os.symlink(real, node.state_dir)
    call = node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1")
    assert call.rc != 0 and call.json["code"] == 5 and node.state_dir in call.json["msg"]
    os.unlink(node.state_dir)
    os.rename(real, node.state_dir)
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))
    assert restored(node, nic)


def test_planted_delegate_cache_fifo_or_symlink_neither_hangs_nor_writes_through(node, pod,
                                                                               tmp_path):
    """The delegate's VERSION cache lives in the state dir too: a FIFO there hung ADD; a
    symlink at the old `<cache>.tmp.<pid>` name redirected the write."""
    nic = node.nics[0]
    victim = tmp_path / "victim"
    victim.write_text("precious")
    for d in ("attachments", "devices", "locks"):
        os.makedirs(os.path.join(node.state_dir, d), mode=0o700, exist_ok=True)
    os.mkfifo(os.path.join(node.state_dir, "delegate-versions.json"))
    with open("/proc/sys/kernel/ns_last_pid") as f:
        last = int(f.read())
    for pid in range(last + 1, last + 3000):
        os.symlink(victim, os.path.join(node.state_dir, f"delegate-versions.json.tmp.{pid}"))
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1", timeout=60))
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1", timeout=60))
    assert victim.read_text() == "precious" and restored(node, nic)
