"""Property: whatever a record or AMD's legacy mappings say, DEL, GC and reconcile send `ip`
nothing but the plugin's own grammar (tests/support/grammar.py), never hang, and always answer
with a CNI object, never a traceback.

`ip` and `nsenter` are PATH wrappers that log every argv and batch line. Everything runs on a
simulated node (namespaces); the generated netns paths are restricted to the simulated pod and
to paths that do not exist, so no generated record can point the plugin at a real namespace.
"""

import contextlib
import json
import os
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.checks import logging_ip
from tests.support.grammar import violations
from tests.support.simnode import SimNode

EXAMPLES = int(os.environ.get("HOSTILE_STATE_EXAMPLES", "40"))


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    n = SimNode()
    try:
        n.add_nic(1)
        n.add_nic(2)
        pod = n.add_pod()
        tmp = tmp_path_factory.mktemp("hostile")
        yield n, n.netns_path(pod), tmp
    finally:
        n.close()


def injections(node_ns, proof):
    return [f"\nnetns exec {node_ns} /usr/bin/touch {proof}\n", f"x; touch {proof}",
            "ens1f0 up\nlink del dev ens1f1", "10.0.0.1/24 dev ens1f0\nlink del dev ens1f1",
            "a#b", 'a"b', "a\\b", "default", "-force", "::/0", "fe80::1%eth0", "0x10",
            f"fe80::1%x\nnetns exec {node_ns} /usr/bin/touch {proof}\n",
            f"10.0.0.2/24%x\nnetns exec {node_ns} /usr/bin/touch {proof}\n",
            "4294967296", "1e309", "a" * 300, "ens1f0\r", "\u202e", "1.2.3.4/33"]


def hostile(node_ns, proof):
    scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
               | st.floats(allow_nan=False) | st.text(max_size=20)
               | st.sampled_from(injections(node_ns, proof)))
    return st.recursive(scalars, lambda c: st.lists(c, max_size=3)
                        | st.dictionaries(st.text(max_size=8), c, max_size=3), max_leaves=8)


def base_record(node, pod):
    """A record as the plugin wrote it before routes were numbers (both versions read it)."""
    nic = node.nics[0]
    return {"format": 1, "containerID": "c1", "ifname": "net1", "deviceKey": nic.pci,
            "pciAddress": nic.pci, "netns": pod, "phase": "attached", "result": None,
            "created": 1.0, "netnsID": "", "orphanedSince": 0.0,
            "snapshot": {"name": nic.name, "mac": node.macs[nic.pci], "mtu": 9000, "up": True,
                         "addresses": [{"family": "inet", "local": nic.v4.split("/")[0],
                                        "prefixlen": 24, "peer": "", "broadcast": "",
                                        "label": "", "flags": [], "valid_lft": 4294967295,
                                        "preferred_lft": 4294967295}],
                         "routes": [{"family": "inet", "dst": "10.99.0.0/24",
                                     "gateway": nic.peer_v4, "table": "main", "protocol": "",
                                     "scope": "", "metric": None, "prefsrc": "",
                                     "type": "unicast", "onlink": False, "mtu": 0}]}}


PATHS = [("snapshot", "name"), ("snapshot", "mac"), ("snapshot", "mtu"), ("snapshot", "up"),
         ("snapshot", "addresses"), ("snapshot", "routes"), ("snapshot",),
         ("snapshot", "addresses", 0, "local"), ("snapshot", "addresses", 0, "prefixlen"),
         ("snapshot", "addresses", 0, "peer"), ("snapshot", "addresses", 0, "broadcast"),
         ("snapshot", "addresses", 0, "label"), ("snapshot", "addresses", 0, "flags"),
         ("snapshot", "addresses", 0, "family"), ("snapshot", "addresses", 0, "valid_lft"),
         ("snapshot", "routes", 0, "dst"), ("snapshot", "routes", 0, "gateway"),
         ("snapshot", "routes", 0, "table"), ("snapshot", "routes", 0, "protocol"),
         ("snapshot", "routes", 0, "scope"), ("snapshot", "routes", 0, "metric"),
         ("snapshot", "routes", 0, "prefsrc"), ("snapshot", "routes", 0, "type"),
         ("snapshot", "routes", 0, "mtu"), ("snapshot", "routes", 0, "pref"),
         ("snapshot", "routes", 0, "metrics"), ("snapshot", "routes", 0, "family"),
         ("snapshot", "routes", 0, "onlink"),
         ("ifname",), ("deviceKey",), ("pciAddress",), ("phase",), ("containerID",),
         ("created",), ("orphanedSince",), ("netnsID",), ("format",), ("result",)]


# What newer records add to the snapshot (altnames, link settings): sometimes there, and as
# hostile as the rest.
LINK_FIELDS = {"altnames": ["enp1s0f0"], "not_restorable": ["x y", "x\ny"],
               "settings": {"arp": True, "multicast": True, "allmulticast": False,
                            "promisc": False, "txqueuelen": 1000, "group": 0,
                            "gso_max_size": 65536, "gso_max_segs": 65535,
                            "gro_max_size": 65536, "offloads": [["rx-checksumming", True]],
                            "broadcast": "ff:ff:ff:ff:ff:ff", "linkmode": "default",
                            "channels": [["rx", 1], ["tx", 1]]}}
PATHS += [("snapshot", "altnames"), ("snapshot", "altnames", 0), ("snapshot", "settings"),
          ("snapshot", "settings", "arp"), ("snapshot", "settings", "txqueuelen"),
          ("snapshot", "settings", "group"), ("snapshot", "settings", "gso_max_size"),
          ("snapshot", "settings", "offloads"), ("snapshot", "settings", "offloads", 0),
          ("snapshot", "settings", "offloads", 0, 0), ("snapshot", "settings", "broadcast"),
          ("snapshot", "settings", "linkmode"), ("snapshot", "settings", "channels"),
          ("snapshot", "settings", "channels", 0), ("snapshot", "settings", "channels", 0, 1),
          ("snapshot", "not_restorable"), ("snapshot", "not_restorable", 0)]


def _set(obj, path, value):
    for key in path[:-1]:
        obj = obj[key]
    obj[path[-1]] = value


@st.composite
def records(draw, node, pod, proof):
    if draw(st.integers(0, 9)) == 0:
        return draw(hostile(node.node, proof))  # not even an object, sometimes
    record = base_record(node, pod)
    if draw(st.booleans()):
        record["snapshot"].update(json.loads(json.dumps(LINK_FIELDS)))
    attack = st.sampled_from(injections(node.node, proof))
    for path in draw(st.lists(st.sampled_from(PATHS), min_size=1, max_size=3)):
        value = draw(attack | hostile(node.node, proof))
        with contextlib.suppress(KeyError, IndexError, TypeError):  # parent already replaced
            _set(record, path, value)
    # Never a real namespace: only the simulated pod, nothing, or a path that does not exist.
    record["netns"] = draw(st.sampled_from([pod, "", "/nonexistent/ns", "relative",
                                            f"/x\n{proof}"]))
    return record


@st.composite
def legacy_files(draw, node, proof):
    if draw(st.booleans()):
        return None
    key = draw(st.sampled_from([node.nics[0].pci, node.nics[1].pci, "ens1f1"])
               | st.text(max_size=12))
    entry = {"hostInterfaceName": draw(st.sampled_from([node.nics[1].name])
                                       | hostile(node.node, proof)),
             "hostInterfaceIPs": draw(st.lists(st.sampled_from([node.nics[1].v4])
                                               | hostile(node.node, proof), max_size=2)),
             "state": draw(st.sampled_from(["UP", "DOWN"]) | hostile(node.node, proof))}
    return {key: entry}


def _reset(node):
    shutil.rmtree(node.state_dir, ignore_errors=True)
    os.makedirs(os.path.join(node.state_dir, "attachments"), mode=0o700)
    os.chmod(node.state_dir, 0o700)


def _run(node, pod, tmp, command, record, legacy):
    _reset(node)
    with open(os.path.join(node.state_dir, "attachments", "c1@net1.json"), "w") as f:
        json.dump(record, f)
    if legacy is not None:
        with open(os.path.join(node.state_dir, "ip-interface-mappings.json"), "w") as f:
            json.dump(legacy, f)
    log = tmp / "ip.log"
    log.write_text("")
    env = logging_ip(tmp / "bin", log)
    if command == "reconcile":
        node.sync_sysfs()
        p = subprocess.run(["ip", "netns", "exec", node.node, "env", f"PATH={env['PATH']}",
                            node.plugin, "reconcile", "--state-dir", node.state_dir,
                            "--interval", "0"], capture_output=True, text=True, timeout=60)
        stdout, stderr = p.stdout, p.stderr
        assert p.returncode in (0, 1)
    else:
        conf = node.conf(node.nics[0].pci, "1.1.0")
        if command == "GC":
            conf["cni.dev/valid-attachments"] = []
        call = node.cni(command, conf, "c1", pod, "net1", extra_env=env, timeout=60)
        stdout, stderr = call.stdout, call.stderr
        if stdout.strip():
            obj = json.loads(stdout)
            assert call.rc == 0 or {"code", "msg"} <= set(obj)
        else:
            assert call.rc == 0
    assert "Traceback" not in stderr, stderr
    return log.read_text()


@pytest.mark.parametrize("command", ["DEL", "GC", "reconcile"])
def test_nothing_but_the_grammar_reaches_ip(sim, command):
    node, pod, tmp = sim
    proof = tmp / "pwned"

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(record=records(node, pod, str(proof)), legacy=legacy_files(node, str(proof)))
    def check(record, legacy):
        text = _run(node, pod, tmp, command, record, legacy)
        assert violations(text) == []
        assert not proof.exists()

    check()
