"""The kubelet's own path: containerd's CRI plugin (Debian's containerd 1.6) runs our plugin
through libcni for pod sandboxes, driven over the CRI v1 API as the kubelet would drive it.

One containerd for the module (tests/support/containerd_cri.py: own config, root, state, socket and CNI
dirs under a temp dir, in the simulated node's netns), one conflist per test; every test leaves
no sandbox behind, and the module leaves nothing running."""

import json
import os
import signal
import time
import uuid

import grpc
import pytest
from cri_api.v1 import api_pb2

from tests.support.containerd_cri import Containerd, in_netns
from tests.support.simnode import node_with_nics


@pytest.fixture(scope="module")
def node():
    with node_with_nics() as n:
        yield n


@pytest.fixture(scope="module")
def containerd(node):
    with Containerd(node, record_commands=True) as c:
        c.start()
        yield c


@pytest.fixture
def cri(containerd, node):
    """containerd with a clean slate; afterwards every sandbox is removed and both NICs are
    home whole (a test that strands a NIC fails here, not in the next test)."""
    containerd.mark()
    yield containerd
    if containerd.rt is None:
        containerd.start()
    for sid in containerd.sandbox_ids():
        containerd.remove(sid)
    for nic in node.nics:
        assert_home(node, nic)
    assert records(node) == []


def records(node):
    d = os.path.join(node.state_dir, "attachments")
    return sorted(n for n in os.listdir(d) if n.endswith(".json")) if os.path.isdir(d) else []


def network(node, version="1.0.0", chain=(), **selector):
    """A conflist of our plugin (as simnode configures it for this node) plus `chain`."""
    ours = {k: v for k, v in node.conf(**selector).items() if k not in ("cniVersion", "name")}
    return {"cniVersion": version, "name": f"ahd-{uuid.uuid4().hex[:8]}",
            "plugins": [ours, *({"type": t} for t in chain)]}


def run_pod(c, node):
    """RunPodSandbox, with the fake sysfs listing the node's NICs before and after, as sysfs
    would (simnode mirrors it; containerd runs the plugin without asking us)."""
    node.sync_sysfs()
    try:
        return c.run_pod(f"p{uuid.uuid4().hex[:8]}")
    finally:
        node.sync_sysfs()


def eth0(c, sid):
    found = json.loads(in_netns(c.netns(sid), "ip", "-j", "addr", "show", "dev", "eth0",
                                check=True).stdout)
    return found[0]


def assert_in_pod(c, sid, nic):
    link = eth0(c, sid)
    assert {f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"]
            if a.get("scope") != "link"} == {nic.v4, nic.v6}
    assert link["mtu"] == nic.mtu
    ping = in_netns(c.netns(sid), "ping", "-c1", "-W2", nic.peer_v4)
    assert ping.returncode == 0, ping.stdout + ping.stderr


def assert_home(node, nic):
    link = node.link(node.node, nic.name)
    assert link is not None, f"{nic.name} is not on the node"
    assert node.addresses(node.node, nic.name) == {nic.v4, nic.v6}
    assert "UP" in link["flags"] and link["mtu"] == nic.mtu


def commands(calls):
    return [x.split()[0] for x in calls]


def test_run_stop_twice_and_remove(cri, node):
    nic = node.nics[0]
    cri.use_network(network(node, pci=nic.pci))
    sid = run_pod(cri, node)
    assert cri.status(sid)[0] == "READY"
    assert node.link(node.node, nic.name) is None
    assert_in_pod(cri, sid, nic)
    assert records(node) == [f"{sid}@eth0.json"]
    cri.stop_pod(sid)
    assert_home(node, nic)
    assert records(node) == []
    cri.stop_pod(sid)  # the kubelet retries stops: nothing more to do, and no error
    assert_home(node, nic)
    cri.remove(sid)
    assert sid not in cri.sandbox_ids()
    # containerd 1.6 sends ADD and DEL only (no CHECK, even with a 1.0.0 conflist); stop and
    # remove each send a DEL, the remove's without netns or prevResult.
    calls = cri.new_calls()
    assert calls[0] == "ADD netns -"
    assert set(commands(calls)) == {"ADD", "DEL"}
    assert calls[1] == "DEL netns prev" and calls[-1] == "DEL - -"


def test_remove_without_stop(cri, node):
    nic = node.nics[0]
    cri.use_network(network(node, pci=nic.pci))
    sid = run_pod(cri, node)
    assert_in_pod(cri, sid, nic)
    cri.remove(sid)  # forced: containerd stops it first
    assert sid not in cri.sandbox_ids()
    assert_home(node, nic)
    assert records(node) == []


def test_a_second_pod_for_a_taken_nic_fails_and_the_first_is_intact(cri, node):
    nic = node.nics[0]
    cri.use_network(network(node, pci=nic.pci))
    first = run_pod(cri, node)
    with pytest.raises(grpc.RpcError) as refused:
        run_pod(cri, node)
    # our code 103 (device in use) reaches the kubelet as the message naming the holder
    assert f"is attached to {first}/eth0" in refused.value.details()
    assert cri.sandbox_ids() == [first]  # the failed sandbox was cleaned up
    assert_in_pod(cri, first, nic)  # containerd's DEL for the failed pod did not touch it
    assert records(node) == [f"{first}@eth0.json"]
    cri.stop_pod(first)
    assert_home(node, nic)


def test_pause_killed_then_stop(cri, node):
    nic = node.nics[0]
    cri.use_network(network(node, pci=nic.pci))
    sid = run_pod(cri, node)
    pid = cri.pause_pid(sid)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while cri.status(sid)[0] == "READY" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cri.status(sid)[0] == "NOTREADY"
    assert node.link(node.node, nic.name) is None  # the netns outlives the pause process
    cri.stop_pod(sid)
    assert_home(node, nic)
    assert records(node) == []


def test_containerd_restarted_with_a_pod_running(cri, node):
    nic = node.nics[0]
    cri.use_network(network(node, pci=nic.pci))
    sid = run_pod(cri, node)
    cri.restart()
    assert cri.status(sid)[0] == "READY"
    assert_in_pod(cri, sid, nic)
    cri.stop_pod(sid)
    assert_home(node, nic)
    assert records(node) == []


def test_chained_with_sbr(cri, node):
    nic = node.nics[0]
    cri.use_network(network(node, chain=("sbr",), pci=nic.pci))
    sid = run_pod(cri, node)
    link = eth0(cri, sid)
    assert {f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"]
            if a.get("scope") != "link"} == {nic.v4, nic.v6}
    source = nic.v4.split("/")[0]
    rules = in_netns(cri.netns(sid), "ip", "rule", check=True).stdout
    assert f"from {source} lookup" in rules  # sbr ran after us, on our result
    ping = in_netns(cri.netns(sid), "ping", "-c1", "-W2", "-I", source, nic.peer_v4)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    cri.stop_pod(sid)
    assert_home(node, nic)


def test_device_by_name(cri, node):
    nic = node.nics[1]
    cri.use_network(network(node, device=nic.name))
    sid = run_pod(cri, node)
    assert_in_pod(cri, sid, nic)
    cri.stop_pod(sid)
    assert_home(node, nic)
    cri.remove(sid)
    assert records(node) == []


@pytest.mark.parametrize("version", ["1.0.0", "0.4.0", "0.3.1"])
def test_cni_versions_containerd_1_6_runs(cri, node, version):
    nic = node.nics[0]
    cri.use_network(network(node, version, pci=nic.pci))
    sid = run_pod(cri, node)
    assert_in_pod(cri, sid, nic)
    cri.stop_pod(sid)
    assert_home(node, nic)
    assert set(commands(cri.new_calls())) == {"ADD", "DEL"}  # no CHECK even for 0.4.0+


def test_a_1_1_0_conflist_fails_in_containerd_1_6_and_the_nic_comes_home(cri, node):
    """We answer in the version asked for; 1.6's libcni cannot parse a 1.1.0 result, so the
    sandbox fails and containerd's cleanup DEL gives the NIC back."""
    version = cri.rt.Version(api_pb2.VersionRequest(), timeout=30).runtime_version
    if not version.startswith(("1.6.", "v1.6.")):
        pytest.skip(f"pins containerd 1.6's behaviour; this is {version}")
    nic = node.nics[0]
    cri.use_network(network(node, "1.1.0", pci=nic.pci))
    with pytest.raises(grpc.RpcError) as failed:
        run_pod(cri, node)
    assert "unsupported CNI result version" in failed.value.details()
    assert commands(cri.new_calls())[:2] == ["ADD", "DEL"]
    assert_home(node, nic)
    assert records(node) == []
