"""Multus thick: our plugin exec'd inside the multus-daemon container (tests/support/thick.py),
with and without `chrootDir`, across a Multus restart, with our daemon stopped in between, and
without privilege (issue 21). It always acts in the node's root, or fails saying what to change;
DEL never answers success from somewhere else.

Every test checks that the record lives in the node's state dir, never in the container's
layer. The plugin is the one container/install.py installs from `make bundle`: it runs inside a
minimal root that has no iproute2.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import pytest

from tests.support.simnode import SimNode, node_with_nics
from tests.support.thick import MultusThick, installed_plugin


@pytest.fixture(scope="module")
def plugin_dir():
    """The node's CNI bin dir with our plugin and delegates, as the init container leaves it."""
    base = tempfile.mkdtemp(prefix="ahd-thick-bin-", dir="/var/tmp")
    try:
        installed_plugin(os.path.join(base, "opt-cni-bin"), os.path.join(base, "policy.d"))
        yield os.path.join(base, "opt-cni-bin")
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def node():
    with node_with_nics(1) as n:
        yield n


@pytest.fixture
def multus(node, plugin_dir):
    m = MultusThick(node, plugin_dir)
    try:
        m.start()
        yield m
    finally:
        m.close()


@pytest.fixture
def pod(node):
    return node.netns_path(node.add_pod())


def records(node: SimNode) -> list[str]:
    d = os.path.join(node.state_dir, "attachments")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def assert_nothing_in_the_layer(m: MultusThick) -> None:
    """No record, lock or policy of ours was written in the container's own layer."""
    ours = [f for f in m.layer_files()
            if f.startswith((m.node.tmp, "/var/lib/cni/amd-host-device", "/run/amd-host-device"))]
    assert ours == [], ours


def home(node: SimNode) -> bool:
    """The NIC is on the node with every address it had."""
    nic = node.nics[0]
    return node.addresses(node.node, nic.name) == {nic.v4, nic.v6}


def add(m: MultusThick, pod: str, mode: str):
    nic = m.node.nics[0]
    return m.cni("ADD", m.node.conf(nic.pci), "c1", pod, "net1", mode=mode)


def delete(m: MultusThick, pod: str, mode: str):
    nic = m.node.nics[0]
    return m.cni("DEL", m.node.conf(nic.pci), "c1", pod, "net1", mode=mode)


def attached(node: SimNode, pod: str, call) -> None:
    assert call.rc == 0, call.stdout + call.stderr
    assert node.addresses(os.path.basename(pod), "net1") == {node.nics[0].v4, node.nics[0].v6}
    assert node.link(node.node, node.nics[0].name) is None
    assert len(records(node)) == 1          # in the node's state dir


def the_container_has_no_ip(m: MultusThick) -> None:
    assert m.run_in_container("sh", "-c", "command -v ip").returncode != 0


@pytest.mark.parametrize("mode", ["chroot", "plain"])
def test_lifecycle_with_and_without_chrootdir(node, multus, pod, mode):
    """(a) chrootDir: the delegate runs under chroot /hostroot. (b) Without it: the plugin
    enters the node's root itself; the record is in the node's state dir either way."""
    the_container_has_no_ip(multus)
    attached(node, pod, add(multus, pod, mode))
    assert_nothing_in_the_layer(multus)
    call = delete(multus, pod, mode)
    assert call.rc == 0, call.stdout + call.stderr
    assert home(node) and records(node) == []
    assert_nothing_in_the_layer(multus)
    entered = "entering PID 1's root" in call.stderr
    assert entered == (mode == "plain")


@pytest.mark.parametrize("first, then", [("chroot", "plain"), ("plain", "chroot")])
def test_a_multus_restart_that_changes_chrootdir_between_add_and_del(node, multus, pod, first,
                                                                     then):
    """(c) ADD under one daemon-config, a Multus restart (a fresh container, its layer gone)
    under the other, then DEL: the NIC comes home whole."""
    attached(node, pod, add(multus, pod, first))
    multus.start()
    call = delete(multus, pod, then)
    assert call.rc == 0, call.stdout + call.stderr
    assert "nothing recorded" not in call.stderr
    assert home(node) and records(node) == []
    assert_nothing_in_the_layer(multus)


def test_our_daemon_stopped_between_add_and_del(node, multus, pod, plugin_dir):
    """(d) ADD under chroot goes through our daemon; the daemon stops, Multus restarts without
    chrootDir; DEL runs in process in the node's root, finds the record, brings the NIC home."""
    node.start_daemon(plugin=os.path.join(plugin_dir, "amd-host-device"))
    call = add(multus, pod, "chroot")
    attached(node, pod, call)
    assert call.stderr == "" and "attached" in node.daemon_log()   # through the daemon
    node.stop_daemon()
    multus.start()
    call = delete(multus, pod, "plain")
    assert call.rc == 0, call.stdout + call.stderr
    assert "restored" in call.stderr                               # in process, in the node
    assert home(node) and records(node) == []
    assert_nothing_in_the_layer(multus)


def test_our_daemon_is_reached_without_chrootdir(node, multus, pod, plugin_dir):
    """Without chrootDir the daemon's socket (under the node's /run, which the container has
    at /host/run) is found too: the request goes through it."""
    node.start_daemon(plugin=os.path.join(plugin_dir, "amd-host-device"))
    call = add(multus, pod, "plain")
    attached(node, pod, call)
    assert "attached" in node.daemon_log() and "attached" not in call.stderr
    call = delete(multus, pod, "plain")
    assert call.rc == 0 and home(node) and records(node) == []
    assert_nothing_in_the_layer(multus)


@pytest.mark.parametrize("mode", ["no-sys_chroot", "no-sys_ptrace"])
def test_without_privilege_add_says_what_to_change_and_del_is_retried(node, multus, pod, mode):
    """(e) An unprivileged container: ADD fails with the fix and leaves the NIC alone; DEL is
    11 (try again later), never "nothing recorded"; VERSION still answers."""
    call = add(multus, pod, mode)
    assert call.rc == 1
    error = json.loads(call.stdout)
    assert error["code"] == 104 and "chrootDir" in error["details"], error
    assert home(node) and records(node) == []
    call = delete(multus, pod, mode)
    assert call.rc == 1 and json.loads(call.stdout)["code"] == 11
    assert "nothing recorded" not in call.stderr
    version = multus.cni("VERSION", {"cniVersion": "1.0.0"}, mode=mode)
    assert version.rc == 0 and json.loads(version.stdout)["supportedVersions"]
    assert_nothing_in_the_layer(multus)


def test_a_del_that_cannot_reach_the_node_is_retried_until_it_can(node, multus, pod):
    """ADD under chroot; DEL from an unprivileged container is 11 and changes nothing; the
    runtime's retry from a container that can reach the node brings the NIC home."""
    attached(node, pod, add(multus, pod, "chroot"))
    call = delete(multus, pod, "no-sys_chroot")
    assert call.rc == 1 and json.loads(call.stdout)["code"] == 11
    assert len(records(node)) == 1 and not home(node)
    call = delete(multus, pod, "plain")
    assert call.rc == 0 and home(node) and records(node) == []


def test_a_missing_node_policy_is_a_warning_naming_it(node, pod):
    """The installer always writes one: a command on the defaults says so, with the path."""
    os.unlink(node.policy_path)
    nic = node.nics[0]
    call = node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1")
    assert call.rc == 0, call.stdout + call.stderr
    warned = [x for x in call.stderr.splitlines() if "level=warn" in x and node.policy_path in x]
    assert len(warned) == 1, call.stderr
    node.write_policy()
    call = node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1")
    assert call.rc == 0 and node.policy_path not in call.stderr


def test_a_cni_bin_dir_that_is_not_the_nodes_is_refused_not_used(node, multus, pod):
    """The plugin runs from a copy in the container's own layer (a CNI bin dir mounted or
    copied elsewhere): the node's root has not this installation, so nothing is entered or
    changed; ADD says what to change, DEL is 11."""
    copy = "/opt/elsewhere"
    assert multus.run_in_container("cp", "-a", multus.plugin_dir, copy).returncode == 0
    entry = f"{copy}/amd-host-device"
    nic = node.nics[0]
    call = multus.cni("ADD", node.conf(nic.pci), "c1", pod, "net1", mode="plain", plugin=entry)
    assert call.rc == 1
    error = json.loads(call.stdout)
    assert error["code"] == 104 and "does not have this plugin" in error["msg"], error
    assert home(node) and records(node) == []
    call = multus.cni("DEL", node.conf(nic.pci), "c1", pod, "net1", mode="plain", plugin=entry)
    assert call.rc == 1 and json.loads(call.stdout)["code"] == 11
    assert_nothing_in_the_layer(multus)
