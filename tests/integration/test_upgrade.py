"""Upgrades and rollbacks across releases lose nothing: pods that hold NICs while the DaemonSet
rolls to another release still get them back. Real ip, host-device, namespaces.

The older plugins are built from git history (tests/support/releases.py: `git archive` of the
release's last commit, run by this venv's interpreter in isolated mode), once per module.

- PREVIOUS: the release before this one. Until a second release with a meaningful version
  exists (0.2.0 is the first: every earlier build called itself 0.1.0), PREVIOUS is this
  release itself (the plugin under test), and the test says so in its log.
- 0.1.0: the last build that called itself 0.1.0 (the parent of the commit that named 0.2.0),
  which is what users run before this release: the rollout that matters today.
- 35ad0c0: a 0.1.0 build from before records carried the NIC's identity (the issue's report).

Each scenario runs in process and through the daemon (thick mode), the old daemon serving the
old release's calls and the current one the current release's, as a rolling DaemonSet does.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time

import pytest

from plugin import __version__, formats
from tests.support import releases
from tests.support.checks import attachments, gc_call, ns, ok, records, restored
from tests.support.simnode import SimNode, sh

log = logging.getLogger(__name__)
PRE_IDENTITY = "35ad0c0"


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """name -> plugin runner: each old tree extracted and made runnable once per module."""
    root = tmp_path_factory.mktemp("releases")
    previous = releases.previous(__version__)
    if previous is None:
        log.warning("no release before %s with a meaningful version yet: the upgrade test "
                    "runs against %s itself as the previous release", __version__, __version__)
    last_010 = releases.releases().get("0.1.0")
    assert last_010 is not None, ("the git history has no commit that calls itself 0.1.0: "
                                  "the upgrade test needs the full history (a shallow clone: "
                                  "git fetch --unshallow)")
    out = {"0.1.0": releases.build(last_010.commit, str(root / "0.1.0")),
           PRE_IDENTITY: releases.build(PRE_IDENTITY, str(root / PRE_IDENTITY))}
    out["previous"] = (releases.build(previous.commit, str(root / previous.version))
                       if previous else "")   # "": the plugin under test
    return out


@pytest.fixture(params=["in-process", "daemon"])
def transport(request):
    return request.param


@pytest.fixture
def node3():
    node = SimNode()
    try:
        for index in (1, 2, 3):
            node.add_nic(index)
        yield node
    finally:
        node.close()


def switch_daemon(node, transport, plugin="", *args):
    """The DaemonSet rolls: the old daemon stops, the new one starts ("" = the current)."""
    if transport != "daemon":
        return
    if node.daemon is not None:
        assert node.stop_daemon() == 0, node.daemon_log()[-2000:]
    node.start_daemon(*args, plugin=plugin)


def conf(node, nic):
    # stateDir repeats node policy's (the env override): builds before node policy took it
    # from the config.
    return node.conf(nic.pci, stateDir=node.state_dir)


def home_as_the_kernel_sends_it(node, pod, nic):
    """A physical NIC comes home when its pod's netns dies; here the veth is moved by hand,
    under its node name (what the Go plugin's rule, and an upgraded record's, look for)."""
    sh("ip", "-n", pod, "link", "set", "net1", "netns", node.node, "name", nic.name)
    node.remove_pod(pod)


@pytest.mark.parametrize("old", ["previous", "0.1.0"])
def test_upgrade_check_del_gc_and_reconcile_lose_nothing(node3, builds, old, transport):
    """Three pods attached by the old release; the DaemonSet rolls; the current release then
    CHECKs the first and DELs it, GCs the second, reconciles the third after its pod died."""
    node = node3
    plugin = builds[old]
    a, b, c = node.nics
    pods = [node.netns_path(node.add_pod()) for _ in range(3)]
    switch_daemon(node, transport, plugin)  # the old release's daemon, if thick
    added = [ok(node.cni("ADD", conf(node, nic), f"c{i}", pod, "net1", plugin=plugin))
             for i, (nic, pod) in enumerate(zip(node.nics, pods, strict=True))]
    assert len(records(node)) == 3
    switch_daemon(node, transport, "", "--reconcile-interval", "0.5")  # rolled: the current

    listing = json.loads(ok_run(node, "list", "--json"))
    assert len(listing["attachments"]) == 3 and listing["newer"] == listing["corrupt"] == []

    check = conf(node, a) | {"cniVersion": "1.0.0", "prevResult": added[0]}
    ok(node.cni("CHECK", check, "c0", pods[0], "net1"))
    ok(node.cni("DEL", conf(node, a), "c0", pods[0], "net1"))
    assert restored(node, a)

    gc = gc_call(node, [{"containerID": "c2", "ifname": "net1"}])
    ok(gc)
    assert restored(node, b) and node.link(ns(pods[2]), "net1") is not None

    sh("ip", "-n", ns(pods[2]), "link", "set", "net1", "netns", node.node)  # pod died: home
    node.remove_pod(ns(pods[2]))
    if transport == "daemon":   # the daemon's own reconcile pass
        deadline = time.monotonic() + 30
        while records(node) and time.monotonic() < deadline:
            time.sleep(0.1)
    else:
        done = reconcile(node)
        assert done.rc == 0, done.stderr
    assert records(node) == [], node.daemon_log()[-3000:]
    assert restored(node, c)


@pytest.mark.parametrize("old", ["previous", "0.1.0"])
def test_downgrade_del_with_the_older_release_destroys_nothing(node3, builds, old, transport):
    """ADD by the current release, then the DaemonSet is rolled back: the older release DELs.
    0.2.0 writes records of the format 0.1.0 reads (formatVersion 1, `format` 1), so it gives
    the NIC back; nothing is set aside."""
    node = node3
    plugin = builds[old]
    a = node.nics[0]
    pod = node.netns_path(node.add_pod())
    switch_daemon(node, transport)
    ok(node.cni("ADD", conf(node, a), "c1", pod, "net1"))
    switch_daemon(node, transport, plugin)   # rolled back
    ok(node.cni("DEL", conf(node, a), "c1", pod, "net1", plugin=plugin))
    assert restored(node, a)
    assert os.listdir(attachments(node)) == []   # given back, not set aside


def reconcile(node):
    """`amd-host-device reconcile` once, by the current release, with the node's sysfs."""
    return node.run("reconcile", "--state-dir", node.state_dir, "--interval", "0")


def ok_run(node, *args, plugin=""):
    call = node.run(*args, plugin=plugin)
    assert call.rc == 0, call.stderr
    return call.stdout


def to_future(path):
    """What a later release with a new record format might write for the same attachment."""
    obj = json.loads(path.read_text())
    obj |= {"formatVersion": formats.RECORD_VERSION + 1, "format": formats.RECORD_VERSION + 1,
            "writtenBy": "9.0.0", "snapshot": {"links": [obj["snapshot"]]}}
    path.write_text(json.dumps(obj))
    return obj


def test_a_record_from_a_newer_release_survives_del_gc_and_reconcile(node3, transport):
    """A rollback to this release (from a later one with a new record format): DEL fails with
    code 11 and changes nothing, GC and reconcile leave it, `list` says why; once the newer
    release is back (here: the record as it knew it), the NIC comes home whole."""
    node = node3
    a, b = node.nics[:2]
    pod, other = (node.netns_path(node.add_pod()) for _ in range(2))
    switch_daemon(node, transport)
    ok(node.cni("ADD", conf(node, a), "c1", pod, "net1"))
    ok(node.cni("ADD", conf(node, b), "c2", other, "net1"))
    (name, _) = sorted(records(node))
    path = attachments(node) / name
    original = path.read_text()
    future = to_future(path)
    before = sorted(os.listdir(node.state_dir)), sorted(os.listdir(attachments(node)))

    call = node.cni("DEL", conf(node, a), "c1", pod, "net1")
    assert call.rc != 0 and call.json["code"] == 11, call.stdout
    assert "newer release" in call.json["msg"] and "9.0.0" in call.json["msg"]
    again = node.cni("ADD", conf(node, a), "c1", pod, "net1")   # the runtime's retry of ADD
    assert again.rc != 0 and again.json["code"] == 11, again.stdout
    ok(gc_call(node, []))                     # releases c2, leaves c1 alone
    assert restored(node, b)
    node.remove_pod(ns(other))
    done = reconcile(node)
    assert done.rc == 0, done.stderr
    assert json.loads(path.read_text()) == future
    assert (sorted(os.listdir(node.state_dir)), sorted(os.listdir(attachments(node)))) == \
        (before[0], [name])
    assert node.link(ns(pod), "net1") is not None   # still in its pod

    listing = json.loads(ok_run(node, "list", "--json"))
    (row,) = listing["newer"]
    assert row["writtenBy"] == "9.0.0" and name in row["what"] and "newer release" in row["reason"]
    assert "Written by a newer release" in ok_run(node, "list")

    path.write_text(original)                  # the newer release is back
    ok(node.cni("DEL", conf(node, a), "c1", pod, "net1"))
    assert restored(node, a) and records(node) == []


def test_a_record_from_before_identity_is_given_back_only_on_proof(node3, builds, transport):
    """A 0.1.0 build from before records carried the NIC's identity (35ad0c0), then the
    current release. Our NICs are veths (no PCI parent): in the pod nothing proves one (the pod
    may have renamed, re-MAC'd or replaced it), so DEL keeps the record and says so; once the
    NIC is home under its node name, sysfs listing it under the recorded PCI function proves
    it (the Go plugin's rule), and reconcile gives it back."""
    node = node3
    a = node.nics[0]
    pod = node.netns_path(node.add_pod())
    plugin = builds[PRE_IDENTITY]
    ok(node.cni("ADD", conf(node, a), "c1", pod, "net1", plugin=plugin))
    (name,) = records(node)
    assert "identity" not in json.loads((attachments(node) / name).read_text())
    switch_daemon(node, transport)

    listing = json.loads(ok_run(node, "list", "--json"))
    assert [r["writtenBy"] for r in listing["attachments"]] == ["0.1.0"]
    call = node.cni("DEL", conf(node, a), "c1", pod, "net1")
    ok(call)
    logged = call.stderr + (node.daemon_log() if transport == "daemon" else "")
    assert "nothing recorded proves it" in logged and "record kept" in logged
    assert records(node) == [name] and node.link(ns(pod), "net1") is not None

    home_as_the_kernel_sends_it(node, ns(pod), a)
    done = reconcile(node)
    assert done.rc == 0, done.stderr
    assert restored(node, a) and records(node) == [], done.stderr


def test_the_old_builds_really_are_old(builds):
    """The runners run the trees they were built from, not the plugin under test."""
    for name in ("0.1.0", PRE_IDENTITY):
        tree = os.path.join(os.path.dirname(builds[name]), "tree")
        assert not os.path.exists(os.path.join(tree, "plugin", "formats.py"))
    about = subprocess.run([builds["0.1.0"], "--version"], capture_output=True, text=True,
                           check=False, stdin=subprocess.DEVNULL)
    assert about.stdout.startswith("amd-host-device 0.1.0 "), about
