"""Nothing lost: concurrency, crashes, vanished pods, renamed interfaces, transient failures,
GC, STATUS, reconcile and upgrades from AMD's Go plugin. Real ip, host-device, namespaces."""

import fcntl
import functools
import json
import os
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from simnode import SimNode, sh

ROUNDS = int(os.environ.get("STRESS_ROUNDS", "20"))
REAL_IP = shutil.which("ip")


def ok(call):
    assert call.rc == 0, f"rc={call.rc} stdout={call.stdout} stderr={call.stderr}"
    return call.json


def records(node):
    d = os.path.join(node.state_dir, "attachments")
    return sorted(n for n in os.listdir(d) if n.endswith(".json")) if os.path.isdir(d) else []


def restored(node, nic, up=True):
    link = node.link(node.node, nic.name)
    return (link is not None and ("UP" in link["flags"]) == up and link["mtu"] == nic.mtu
            and node.addresses(node.node, nic.name) == {nic.v4, nic.v6})


def ns(path):
    return path.rsplit("/", 1)[1]


def script(tmp_path, name, body):
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


# -- 1. concurrency --------------------------------------------------------------------------

@pytest.fixture
def big_node():
    n = SimNode()
    try:
        for i in range(1, 9):
            n.add_nic(i)
        yield n
    finally:
        n.close()


def test_eight_parallel_add_del_for_many_rounds_lose_nothing(big_node):
    node = big_node
    pods = [node.netns_path(node.add_pod()) for _ in range(4)]
    # two NICs per pod (net1, net2), as the seed's pod has
    jobs = [(nic, f"pod{i // 2}", pods[i // 2], f"net{i % 2 + 1}") for i, nic in enumerate(node.nics)]
    def run(command, rnd, job):
        nic, pod_id, pod, ifname = job
        return node.cni(command, node.conf(nic.pci), f"{pod_id}r{rnd}", pod, ifname)

    with ThreadPoolExecutor(8) as pool:
        for rnd in range(ROUNDS):
            adds = list(pool.map(functools.partial(run, "ADD", rnd), jobs))
            assert [c.rc for c in adds] == [0] * 8, [c.stdout for c in adds if c.rc]
            assert len(records(node)) == 8
            for (nic, _, pod, ifname) in jobs:
                assert node.addresses(ns(pod), ifname) == {nic.v4, nic.v6}
            dels = list(pool.map(functools.partial(run, "DEL", rnd), jobs))
            assert [c.rc for c in dels] == [0] * 8, [c.stdout for c in dels if c.rc]
            assert records(node) == []
            assert all(restored(node, nic) for nic in node.nics), f"round {rnd}"


def test_a_lock_held_too_long_gives_code_11_not_a_hang(node, pod):
    nic = node.nics[0]
    locks = os.path.join(node.state_dir, "locks")
    os.makedirs(locks, exist_ok=True)
    with open(os.path.join(locks, f"{nic.pci}.lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        started = time.monotonic()
        call = node.cni("ADD", node.conf(nic.pci, lockTimeoutSeconds=0.5), "c1", pod, "net1")
        assert time.monotonic() - started < 10
    assert call.rc != 0 and call.json["code"] == 11
    assert restored(node, nic) and records(node) == []


# -- 2. crash at any point -------------------------------------------------------------------

CRASHES = {
    "before-the-move": 'if [ "$CNI_COMMAND" = ADD ]; then kill -9 $PPID; sleep 1; fi\n'
                       'exec /usr/lib/cni/host-device\n',
    "during-the-move": 'if [ "$CNI_COMMAND" = ADD ]; then\n'
                       '  /usr/lib/cni/host-device > /dev/null & kill -9 $PPID; wait; exit 0\nfi\n'
                       'exec /usr/lib/cni/host-device\n',
    "right-after-the-move": 'if [ "$CNI_COMMAND" = ADD ]; then\n'
                            '  /usr/lib/cni/host-device > /dev/null; kill -9 $PPID; sleep 1; fi\n'
                            'exec /usr/lib/cni/host-device\n',
}


@pytest.mark.parametrize("point", list(CRASHES))
def test_sigkill_during_add_then_del_restores(node, pod, tmp_path, point):
    nic = node.nics[0]
    cni = tmp_path / "cni"
    cni.mkdir()
    script(cni, "host-device", CRASHES[point])
    shutil.copy("/usr/lib/cni/static", cni / "static")
    crashed = node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1", cni_path=str(cni),
                       extra_env={"AMD_HOST_DEVICE_FALLBACK_DIRS": ""})
    assert crashed.rc == -9, crashed
    assert records(node) == ["c1@net1.json"]  # the record was written before the move
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))
    assert restored(node, nic) and records(node) == []
    assert node.link(ns(pod), "net1") is None


def _ip_killer(tmp_path, trigger):
    """An `ip` first in PATH that SIGKILLs the plugin when it sees `trigger` in its argv."""
    d = tmp_path / "bin"
    d.mkdir(exist_ok=True)
    script(d, "ip", f'case "$*" in *"{trigger}"*) kill -9 $PPID; sleep 1;; esac\nexec {REAL_IP} "$@"\n')
    return {"PATH": f"{d}:{os.environ['PATH']}"}


def test_sigkill_while_capturing_leaves_the_node_untouched(node, pod, tmp_path, untouched):
    nic = node.nics[0]
    crashed = node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1",
                       extra_env=_ip_killer(tmp_path, "-j -N -batch"))
    assert crashed.rc == -9
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))
    untouched()


def test_sigkill_in_the_middle_of_del_then_del_again_restores(node, pod, tmp_path):
    nic = node.nics[0]
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    crashed = node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1",
                       extra_env=_ip_killer(tmp_path, "-force -batch"))
    assert crashed.rc == -9
    assert not restored(node, nic)  # host-device moved it home bare; we died before restoring
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))
    assert restored(node, nic) and records(node) == []


def test_sigterm_during_add_rolls_back(node, pod, tmp_path):
    nic = node.nics[0]
    cni = tmp_path / "cni"
    cni.mkdir()
    script(cni, "host-device", 'if [ "$CNI_COMMAND" = ADD ]; then\n'
           '  /usr/lib/cni/host-device > /dev/null; kill -TERM $PPID; sleep 5; fi\n'
           'exec /usr/lib/cni/host-device\n')
    shutil.copy("/usr/lib/cni/static", cni / "static")
    call = node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1", cni_path=str(cni),
                    extra_env={"AMD_HOST_DEVICE_FALLBACK_DIRS": ""})
    assert call.rc != 0
    assert restored(node, nic) and records(node) == []


# -- 3. keys ---------------------------------------------------------------------------------

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


# -- 4. the pod netns is gone ----------------------------------------------------------------

def test_nic_returning_late_from_a_destroyed_netns_is_restored(node):
    """Physical NICs come home from a destroyed netns under their pod-side name, a little
    later. Emulated: a process pins the netns after its path is removed; a second later the
    NIC is moved to the node as the kernel would, and the netns dies."""
    nic = node.nics[0]
    pod = node.add_pod()
    path = node.netns_path(pod)
    ok(node.cni("ADD", node.conf(nic.pci), "c1", path, "net1"))
    pin = subprocess.Popen(["ip", "netns", "exec", pod, "sleep", "30"])
    try:
        time.sleep(0.2)
        node.remove_pod(pod)
        assert not os.path.exists(path)

        def kernel_returns_it():
            time.sleep(0.8)
            sh("nsenter", f"--net=/proc/{pin.pid}/ns/net", "ip", "link", "set", "net1", "netns",
               node.node)
        t = threading.Thread(target=kernel_returns_it)
        t.start()
        call = node.cni("DEL", node.conf(nic.pci), "c1", path, "net1")
        t.join()
    finally:
        pin.kill()
        pin.wait()
    ok(call)
    assert restored(node, nic) and records(node) == []
    ok(node.cni("DEL", node.conf(nic.pci), "c1", path, "net1"))


def test_veth_destroyed_with_its_netns_del_succeeds_repeatedly_and_reconcile_expires_it(node):
    nic = node.nics[0]
    pod = node.add_pod()
    path = node.netns_path(pod)
    ok(node.cni("ADD", node.conf(nic.pci), "c1", path, "net1"))
    node.remove_pod(pod)  # a veth dies with its netns
    for _ in range(3):
        ok(node.cni("DEL", node.conf(nic.pci), "c1", path, "net1"))
        ok(node.cni("DEL", node.conf(nic.pci), "c1", "", "net1"))
    assert records(node) == ["c1@net1.json"]  # kept: a physical NIC might still come home
    with open(os.path.join(node.state_dir, "attachments", "c1@net1.json")) as f:
        rec = json.load(f)
    assert rec["orphanedSince"] > 0
    keep = reconcile(node, "--max-orphan-hours", "1")
    assert keep.returncode == 0 and records(node) == ["c1@net1.json"]
    drop = reconcile(node, "--max-orphan-hours", "0")
    assert drop.returncode == 0 and records(node) == [], drop.stderr


def reconcile(node, *args):
    node.sync_sysfs()
    return subprocess.run(["ip", "netns", "exec", node.node, node.plugin, "reconcile",
                           "--state-dir", node.state_dir, "--interval", "0", *args],
                          capture_output=True, text=True, timeout=60)


def test_reconcile_restores_nics_of_pods_that_died_without_del(node):
    a, b = node.nics
    pod = node.add_pod()
    live = node.netns_path(node.add_pod())
    ok(node.cni("ADD", node.conf(a.pci), "dead", node.netns_path(pod), "net1"))
    ok(node.cni("ADD", node.conf(b.pci), "alive", live, "net1"))
    sh("ip", "-n", pod, "link", "set", "net1", "netns", node.node)  # home as net1
    node.remove_pod(pod)
    out = reconcile(node)
    assert out.returncode == 0, out.stderr
    assert restored(node, a)
    assert records(node) == ["alive@net1.json"]  # a live pod is left alone
    assert node.addresses(ns(live), "net1") == {b.v4, b.v6}


# -- 5. renamed inside the pod ---------------------------------------------------------------

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


# -- 6. transient failures -------------------------------------------------------------------

def test_a_transient_ip_failure_is_retried(node, pod, tmp_path):
    nic = node.nics[0]
    d = tmp_path / "bin"
    d.mkdir()
    count = tmp_path / "count"
    script(d, "ip", f'if [ ! -e {count} ]; then touch {count}; '
                    'echo "RTNETLINK answers: Device or resource busy" >&2; exit 2; fi\n'
                    f'exec {REAL_IP} "$@"\n')
    call = node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1",
                    extra_env={"PATH": f"{d}:{os.environ['PATH']}"})
    ok(call)
    assert "retrying" in call.stderr
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))
    assert restored(node, nic)


def test_a_permanent_ip_failure_fails_at_once(node, pod, tmp_path, untouched):
    d = tmp_path / "bin"
    d.mkdir()
    calls = tmp_path / "calls"
    script(d, "ip", f'echo x >> {calls}; echo "RTNETLINK answers: Operation not permitted" >&2\n'
                    'exit 2\n')
    call = node.cni("ADD", node.conf(node.nics[0].pci), "c1", pod, "net1",
                    extra_env={"PATH": f"{d}:{os.environ['PATH']}"})
    assert call.rc != 0 and call.json["code"] == 101
    assert "Operation not permitted" in call.json["details"]
    assert calls.read_text().count("x") == 1
    untouched()


# -- 7. GC and STATUS ------------------------------------------------------------------------

def gc_call(node, valid, key="cni.dev/valid-attachments"):
    conf = node.conf("", "1.1.0")
    conf[key] = valid
    return node.cni("GC", conf)


@pytest.mark.parametrize("key", ["cni.dev/valid-attachments", "cni.dev/attachments"])
def test_gc_restores_and_forgets_what_is_not_valid(node, key):
    a, b = node.nics
    p1, p2 = (node.netns_path(node.add_pod()) for _ in range(2))
    ok(node.cni("ADD", node.conf(a.pci, "1.1.0"), "keep", p1, "net1"))
    ok(node.cni("ADD", node.conf(b.pci, "1.1.0"), "drop", p2, "net1"))
    ok(gc_call(node, [{"containerID": "keep", "ifname": "net1"}], key))
    assert records(node) == ["keep@net1.json"]
    assert restored(node, b)
    assert node.addresses(ns(p1), "net1") == {a.v4, a.v6}
    ok(gc_call(node, []))
    assert records(node) == [] and restored(node, a)


def test_gc_needs_valid_attachments(node):
    call = node.cni("GC", node.conf("", "1.1.0"))
    assert call.json["code"] == 7


def test_status(node, tmp_path, cni_path_without_host_device):
    ok(node.cni("STATUS", node.conf("", "1.1.0")))
    gone = node.cni("STATUS", node.conf("", "1.1.0"), cni_path=cni_path_without_host_device,
                    extra_env={"AMD_HOST_DEVICE_FALLBACK_DIRS": ""})
    assert gone.json["code"] == 50 and "host-device" in gone.json["msg"]
    (tmp_path / "file").write_text("")
    ro = node.cni("STATUS", node.conf("", "1.1.0"),
                  extra_env={"AMD_HOST_DEVICE_STATE_DIR": str(tmp_path / "file" / "state")})
    assert ro.json["code"] == 50 and "state dir" in ro.json["msg"]
    noip = tmp_path / "noip"
    noip.mkdir()
    for tool in ("nsenter", "env"):
        os.symlink(shutil.which(tool), noip / tool)
    missing = node.cni("STATUS", node.conf("", "1.1.0"), extra_env={"PATH": str(noip)})
    assert missing.json["code"] == 50 and "ip" in missing.json["msg"]


# -- 8. upgrade from AMD's Go plugin ---------------------------------------------------------

def read_json(path):
    with open(path) as f:
        return json.load(f)


def go_plugin_add(node, nic, pod, ifname):
    """What AMD's Go plugin did: host-device ADD with static IPAM, and a mapping by deviceID."""
    conf = {"cniVersion": "0.3.1", "name": "nad", "type": "host-device", "device": nic.name,
            "ipam": {"type": "static", "addresses": [{"address": nic.v4}, {"address": nic.v6}]}}
    call = node.cni("ADD", conf, "gopod", pod, ifname, plugin="/usr/lib/cni/host-device")
    assert call.rc == 0, call.stdout
    os.makedirs(node.state_dir, exist_ok=True)
    path = os.path.join(node.state_dir, "ip-interface-mappings.json")
    data = read_json(path) if os.path.exists(path) else {}
    data[nic.pci] = {"hostInterfaceName": nic.name, "hostInterfaceIPs": [nic.v4, nic.v6],
                     "state": "UP"}
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
    return path


@pytest.mark.parametrize("pod_ifname", ["net1", "ens1f0"])  # newer / older Go releases
def test_del_of_a_pod_created_by_the_go_plugin(node, pod, pod_ifname):
    """The Go plugin recorded no identity: in a pod only a PCI parent proves its NIC (our veth
    NICs have none), so DEL keeps the mapping until the NIC is home, as a physical NIC comes
    home when its pod's netns dies; on the node, the link of its name that sysfs lists under
    its PCI function."""
    a, b = node.nics
    path = go_plugin_add(node, a, pod, pod_ifname)
    go_plugin_add(node, b, node.netns_path(node.add_pod()), "net1")
    ok(node.cni("DEL", node.conf(a.pci), "gopod", pod, pod_ifname))
    assert node.link(ns(pod), pod_ifname) is not None  # not provably its NIC: not taken
    assert sorted(read_json(path)) == sorted([a.pci, b.pci])
    sh("ip", "-n", ns(pod), "link", "set", pod_ifname, "netns", node.node)
    if pod_ifname != a.name:
        sh("ip", "-n", node.node, "link", "set", pod_ifname, "name", a.name)
    ok(node.cni("DEL", node.conf(a.pci), "gopod", pod, pod_ifname))
    assert restored(node, a)
    assert list(read_json(path)) == [b.pci]  # only its own entry is dropped


def test_gc_and_add_honour_go_plugin_entries_for_nics_already_home(node, pod):
    a, b = node.nics
    p1, p2 = (node.add_pod() for _ in range(2))
    path = go_plugin_add(node, a, node.netns_path(p1), "net1")
    go_plugin_add(node, b, node.netns_path(p2), "net1")
    for p, nic in ((p1, a), (p2, b)):  # both Go pods die; host-device gives the NICs back bare
        assert node.cni("DEL", {"cniVersion": "0.3.1", "name": "nad", "type": "host-device",
                                "device": nic.name}, "gopod", node.netns_path(p), "net1",
                        plugin="/usr/lib/cni/host-device").rc == 0
    assert node.addresses(node.node, a.name) == set()
    ok(gc_call(node, []))
    assert restored(node, a) and restored(node, b)
    assert not os.path.exists(path)

    go_plugin_add(node, a, node.netns_path(p1), "net1")
    sh("ip", "-n", p1, "link", "set", "net1", "netns", node.node)  # home bare, as net1
    ok(node.cni("ADD", node.conf(a.pci), "c1", pod, "net1"))
    assert node.addresses(ns(pod), "net1") == {a.v4, a.v6}
    ok(node.cni("DEL", node.conf(a.pci), "c1", pod, "net1"))
    assert restored(node, a)


# -- nothing is forgotten on uncertainty -----------------------------------------------------

def test_when_the_pod_cannot_be_looked_into_del_fails_and_keeps_the_record(node, pod, tmp_path):
    nic = node.nics[0]
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    d = tmp_path / "bin"
    d.mkdir()
    script(d, "ip", f'case "$*" in *"-n {ns(pod)}"*) echo "RTNETLINK answers: Operation not '
                    f'permitted" >&2; exit 2;; esac\nexec {REAL_IP} "$@"\n')
    call = node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1",
                    extra_env={"PATH": f"{d}:{os.environ['PATH']}"})
    assert call.rc != 0 and call.json["code"] == 101
    assert records(node) == ["c1@net1.json"]
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))  # the runtime's retry
    assert restored(node, nic) and records(node) == []


def test_a_nic_gone_from_a_live_pod_is_kept_as_an_orphan_not_forgotten(node, pod):
    nic = node.nics[0]
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    sh("ip", "-n", ns(pod), "link", "del", "net1")  # a veth pair dies with either end
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))
    assert records(node) == ["c1@net1.json"]
    with open(os.path.join(node.state_dir, "attachments", "c1@net1.json")) as f:
        assert json.load(f)["orphanedSince"] > 0
