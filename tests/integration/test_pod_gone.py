"""The pod's netns is gone: a NIC coming home late is restored, a veth destroyed with it is
kept as an orphan until it expires, and reconcile gives back NICs of pods that died without DEL.
Real ip, host-device, namespaces."""

import json
import os
import subprocess
import threading
import time

from tests.support.checks import ns, ok, records, restored
from tests.support.simnode import sh


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
