"""Integration fixtures: a simulated node in namespaces, removed even when a test fails."""

import os
import shutil

import pytest

from tests.support.simnode import SimNode, node_with_nics

if os.geteuid() != 0:
    raise pytest.UsageError("integration tests need root (network namespaces)")
if not os.path.exists("/usr/lib/cni/host-device"):
    raise pytest.UsageError("integration tests need Debian's containernetworking-plugins")


@pytest.fixture
def node():
    with node_with_nics() as n:
        yield n


@pytest.fixture
def pod(node):
    return node.netns_path(node.add_pod())


@pytest.fixture(params=["in-process", "daemon"])
def transport(request, node):
    """The test runs twice: in process, then through `amd-host-device daemon` (thick mode)."""
    if request.param == "daemon":
        node.start_daemon()
    yield request.param
    if request.param == "daemon":
        assert node.stop_daemon() == 0, node.daemon_log()[-2000:]


def _links(addr_show):
    """What configuration says about each link (not carrier or DAD progress)."""
    return sorted((x["ifname"], x["address"], x["mtu"], "UP" in x["flags"],
                   sorted((a["local"], a["prefixlen"], bool(a.get("nodad")))
                          for a in x.get("addr_info", []) if a.get("scope") != "link"))
                  for x in addr_show)


def _routes(routes):
    """Configured routes; kernel ones follow the addresses and appear as DAD completes."""
    return sorted((r.get("dst"), r.get("gateway", ""), r.get("dev", ""), r.get("table", "main"),
                   r.get("metric", 0), r.get("protocol", "")) for r in routes
                  if r.get("protocol") != "kernel")


def node_state(n: SimNode) -> dict:
    """Everything a failed or refused call must leave exactly as it was."""
    return {"addr": _links(n.ip_json(n.node, "addr")),
            "routes": _routes(n.ip_json(n.node, "route", "show", "table", "all")),
            "state": sorted(os.listdir(os.path.join(n.state_dir, "attachments")))
            if os.path.isdir(os.path.join(n.state_dir, "attachments")) else []}


@pytest.fixture
def untouched(node):
    """Call to assert the node's links, addresses, routes and records are as at the start."""
    before = node_state(node)

    def check():
        after = node_state(node)
        assert after["addr"] == before["addr"]
        assert after["routes"] == before["routes"]
        assert after["state"] == before["state"] == []
    return check


@pytest.fixture
def cni_path_without_host_device(tmp_path):
    d = tmp_path / "cni"
    d.mkdir()
    shutil.copy("/usr/lib/cni/static", d / "static")
    return str(d)
