"""Injected routes in the pod, and chains as Multus/libcni run them: [amd-host-device, sbr]
and [amd-host-device, rdma, sbr] with Debian's real sbr."""

import json
import os
import sys

import pytest

from tests.support.multus import Attachment, MultusPod
from tests.support.simnode import sh


def ok(call):
    assert call.rc == 0, f"rc={call.rc} stdout={call.stdout} stderr={call.stderr}"
    return call.json


def ns(path):
    return path.rsplit("/", 1)[1]


def routes(node, netns, *args):
    return node.ip_json(netns, *args, "route", "show", "table", "all") or []


@pytest.mark.parametrize("version", ["0.3.1", "1.0.0", "1.1.0"])
def test_injected_routes_are_in_the_pod_and_the_result(node, pod, version):
    nic = node.nics[0]
    s = node.subnet
    conf = node.conf(nic.pci, version, nexthopNetAddrOffset=1, routeDstPrefixLen=16,
                     nexthopNetAddrOffset6=1, routeDstPrefixLen6=48)
    result = ok(node.cni("ADD", conf, "c1", pod, "net1"))
    assert {(r["dst"], r["gw"]) for r in result["routes"]} == {
        (f"10.{s}.0.0/16", f"10.{s}.1.1"), (f"fd00:{s}:1::/48", f"fd00:{s}:1::1")}
    have = {(r["dst"], r.get("gateway")) for r in routes(node, ns(pod))
            + routes(node, ns(pod), "-6")}
    assert (f"10.{s}.0.0/16", f"10.{s}.1.1") in have
    assert (f"fd00:{s}:1::/48", f"fd00:{s}:1::1") in have
    ok(node.cni("DEL", conf, "c1", pod, "net1"))
    assert node.addresses(node.node, nic.name) == {nic.v4, nic.v6}


def test_one_key_alone_injects_nothing_and_warns(node, pod):
    nic = node.nics[0]
    call = node.cni("ADD", node.conf(nic.pci, nexthopNetAddrOffset=1), "c1", pod, "net1")
    assert "routes" not in ok(call)
    assert "routeDstPrefixLen" in call.stderr and "warn" in call.stderr
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))


def test_bad_value_is_code_7_and_node_untouched(node, pod, untouched):
    call = node.cni("ADD", node.conf(node.nics[0].pci, nexthopNetAddrOffset=-1,
                                     routeDstPrefixLen=0), "c1", pod, "net1")
    assert call.rc != 0 and call.json["code"] == 7 and "nexthopNetAddrOffset" in call.json["msg"]
    untouched()


SBR_CHAIN = {"cniVersion": "1.0.0", "name": "amd-host-device-sbr", "plugins": [
    {"type": "amd-host-device", "nexthopNetAddrOffset": 1, "routeDstPrefixLen": 0},
    {"type": "sbr"}]}


def _behind_the_peer(node):
    """An address on the top-of-rack's loopback: reachable from the pod only through the
    injected default route (which sbr moves into the per-interface table)."""
    far = f"172.31.{node.subnet}.1"
    sh("ip", "-n", node.tor, "addr", "add", f"{far}/32", "dev", "lo")
    return far


def _pod(node, nad, n_nics, plugin_paths=None):
    netns = node.add_pod()
    for conf in nad["plugins"]:
        if conf["type"] == "amd-host-device":
            conf["stateDir"] = node.state_dir
    pod = MultusPod(node, netns=node.netns_path(netns), attachments=[Attachment(nad)] * n_nics,
                    allocated=[n.pci for n in node.nics[:n_nics]],
                    plugin_paths=plugin_paths or {})
    return netns, pod


def test_sbr_chain_gives_policy_routing_through_the_moved_nics(node):
    far = _behind_the_peer(node)
    netns, pod = _pod(node, json.loads(json.dumps(SBR_CHAIN)), 2)
    results = pod.add()
    rules = sh("ip", "-n", netns, "rule").stdout
    for (nic, (ifname, result)) in zip(node.nics, results, strict=True):
        assert result["interfaces"][0]["name"] == ifname
        assert f"from {nic.v4.split('/')[0]} lookup" in rules
        table = next(ln for ln in rules.splitlines() if nic.v4.split("/")[0] in ln).split()[-1]
        tbl = sh("ip", "-n", netns, "route", "show", "table", table).stdout
        assert f"default via {nic.peer_v4} dev {ifname}" in tbl
        assert sh("ip", "netns", "exec", netns, "ping", "-c1", "-W2", "-I", nic.v4.split("/")[0],
                  far, check=False).returncode == 0
    assert "default" not in sh("ip", "-n", netns, "route").stdout  # only via the policy tables
    assert sh("ip", "netns", "exec", netns, "ping", "-c1", "-W1", far, check=False).returncode != 0
    pod.delete()
    for nic in node.nics:
        assert node.addresses(node.node, nic.name) == {nic.v4, nic.v6}
        assert "UP" in node.link(node.node, nic.name)["flags"]


RDMA_STANDIN = """#!{python}
# Stands in for rdma-cni (not packaged for Debian): records what it was given and passes the
# previous result through, as rdma-cni does.
import json, os, sys
conf = json.load(sys.stdin)
with open({log!r}, "a") as f:
    f.write(json.dumps({{"cmd": os.environ["CNI_COMMAND"], "conf": conf}}) + "\\n")
if os.environ["CNI_COMMAND"] == "ADD":
    print(json.dumps(conf["prevResult"]))
"""


def test_rdma_and_sbr_chain_as_multus_builds_it(node, tmp_path):
    log = tmp_path / "rdma.log"
    rdma = tmp_path / "rdma"
    rdma.write_text(RDMA_STANDIN.format(python=sys.executable, log=str(log)))
    os.chmod(rdma, 0o755)
    nad = json.loads(json.dumps(SBR_CHAIN))
    nad["plugins"].insert(1, {"type": "rdma"})
    netns, pod = _pod(node, nad, 1, {"rdma": str(rdma)})
    pod.add()
    calls = [json.loads(x) for x in log.read_text().splitlines()]
    add = calls[0]["conf"]
    assert add["deviceID"] == node.nics[0].pci  # Multus injects into every plugin
    assert add["prevResult"]["interfaces"][0]["name"] == "net1"
    assert f"from {node.nics[0].v4.split('/')[0]} lookup" in sh("ip", "-n", netns, "rule").stdout
    pod.delete()
    assert [json.loads(x)["cmd"] for x in log.read_text().splitlines()] == ["ADD", "DEL"]
    assert node.addresses(node.node, node.nics[0].name) == {node.nics[0].v4, node.nics[0].v6}
