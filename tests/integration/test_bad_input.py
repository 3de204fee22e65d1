"""Bad input: the spec's error object on stdout, a non-zero exit, no traceback, node untouched."""

import json

import pytest

from tests.support.simnode import sh


def assert_error(call, code, word=""):
    assert call.rc != 0
    assert "Traceback" not in call.stdout + call.stderr
    err = json.loads(call.stdout)
    assert set(err) == {"cniVersion", "code", "msg", "details"}
    assert err["code"] == code, err
    assert word in err["msg"], err
    return err


def test_undecodable_json(node, pod, untouched):
    assert_error(node.cni("ADD", "{not json", "c1", pod, "net1"), 6)
    untouched()


def test_missing_device_id(node, pod, untouched):
    assert_error(node.cni("ADD", node.conf(""), "c1", pod, "net1"), 7, "deviceID")
    untouched()


@pytest.mark.parametrize("pci,word", [("0000:7f:00.0", "no such PCI device"),
                                      ("../../../etc", "not a PCI address"),
                                      ("0000:01:00.0/../../x", "not a PCI address")])
def test_unknown_or_malformed_pci_address(node, pod, untouched, pci, word):
    assert_error(node.cni("ADD", node.conf(pci), "c1", pod, "net1"), 7, word)
    untouched()


def test_unsupported_version(node, pod, untouched):
    err = assert_error(node.cni("ADD", node.conf(node.nics[0].pci, "0.2.0"), "c1", pod, "net1"), 1)
    assert err["cniVersion"] == "1.1.0"
    untouched()


@pytest.mark.parametrize("drop", ["CNI_CONTAINERID", "CNI_IFNAME", "CNI_NETNS"])
def test_missing_env(node, pod, untouched, drop):
    args = {"container_id": "c1", "netns": pod, "ifname": "net1"}
    args[{"CNI_CONTAINERID": "container_id", "CNI_IFNAME": "ifname", "CNI_NETNS": "netns"}[drop]] = ""
    assert_error(node.cni("ADD", node.conf(node.nics[0].pci), **args), 4, drop)
    untouched()


def test_missing_pod_netns(node, untouched):
    assert_error(node.cni("ADD", node.conf(node.nics[0].pci), "c1", "/var/run/netns/gone-xyz",
                          "net1"), 3, "CNI_NETNS")
    untouched()


def test_host_device_absent(node, pod, untouched, cni_path_without_host_device):
    call = node.cni("ADD", node.conf(node.nics[0].pci), "c1", pod, "net1",
                    cni_path=cni_path_without_host_device,
                    extra_env={"AMD_HOST_DEVICE_FALLBACK_DIRS": ""})
    assert_error(call, 50, "host-device")
    untouched()


def test_ifname_already_in_the_pod(node, pod, untouched):
    sh("ip", "-n", pod.rsplit("/", 1)[1], "link", "add", "net1", "type", "veth", "peer", "name", "x1")
    assert_error(node.cni("ADD", node.conf(node.nics[0].pci), "c1", pod, "net1"), 4, "already exists")
    untouched()


def test_default_route_nic_is_refused_unless_opted_out(node, pod):
    nic = node.nics[0]
    sh("ip", "-n", node.node, "route", "add", "default", "via", nic.peer_v4, "dev", nic.name)
    call = node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1")
    assert_error(call, 7, "default route")
    assert "allowDefaultRouteDevice" in call.json["details"]
    assert node.link(node.node, nic.name) is not None
    # The opt-out is node policy: a NAD cannot widen it, only the admin's file can.
    widen = node.cni("ADD", node.conf(nic.pci, allowDefaultRouteDevice=True), "c1", pod, "net1")
    assert_error(widen, 7, "allowDefaultRouteDevice")
    node.write_policy(allowDefaultRouteDevice=True)
    ok = node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1")
    assert ok.rc == 0, ok.stdout
    assert node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1").rc == 0
    assert any(r.get("dst") == "default" for r in node.ip_json(node.node, "route"))


def test_failed_delegate_after_the_move_rolls_back(node, pod, untouched):
    """host-device moves the NIC, then its IPAM fails: the NIC must come home configured."""
    conf = node.conf(node.nics[0].pci, ipam={"type": "static", "addresses": [{"address": "bogus"}]})
    call = node.cni("ADD", conf, "c1", pod, "net1")
    assert_error(call, 100, "host-device")
    assert "rolled back" in call.stderr
    untouched()


def test_unknown_command(node, untouched):
    assert_error(node.cni("FROB", node.conf(node.nics[0].pci), "c1", "", "net1"), 4, "CNI_COMMAND")
    untouched()
