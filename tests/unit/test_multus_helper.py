"""tests/support/multus.py reproduces what Multus runs; these check it against Multus's rules."""

import json
from dataclasses import dataclass

import pytest

from tests.support.multus import Attachment, MultusError, MultusPod

NAD = {"cniVersion": "1.0.0", "name": "amd-host-device-nad-nic", "type": "amd-host-device"}
CHAIN = {"cniVersion": "0.4.0", "name": "chain", "plugins": [
    {"type": "amd-host-device"}, {"type": "rdma"}, {"type": "sbr"}]}


@dataclass
class Call:
    rc: int
    stdout: str
    stderr: str = ""


class Recorder:
    """Stands in for the node: records each plugin call, answers with a minimal result."""

    def __init__(self, fail_on=None):
        self.calls = []
        self.fail_on = fail_on  # (command, ifname, type)

    def cni(self, command, conf, container_id="", netns="", ifname="", plugin="",
            extra_env=None, cni_path="", timeout=0):
        self.calls.append({"command": command, "conf": conf, "cid": container_id,
                           "netns": netns, "ifname": ifname, "plugin": plugin,
                           "env": extra_env or {}})
        if self.fail_on == (command, ifname, conf["type"]):
            return Call(1, json.dumps({"code": 100, "msg": "boom"}))
        if command == "ADD":
            result = {"cniVersion": conf["cniVersion"],
                      "interfaces": [{"name": ifname, "sandbox": netns}], "ips": []}
            return Call(0, json.dumps(result))
        return Call(0, "")


def pod(runner, attachments, allocated):
    return MultusPod(runner, "/var/run/netns/p", attachments, allocated, name="network-workload",
                     namespace="ns1", uid="uid-1", sandbox="sandbox1")


def test_same_nad_twice_takes_the_next_sorted_device_and_net1_net2():
    r = Recorder()
    pod(r, [Attachment(NAD), Attachment(NAD)], ["0000:02:00.0", "0000:01:00.0"]).add()
    assert [(c["ifname"], c["conf"]["deviceID"], c["conf"]["pciBusID"]) for c in r.calls] == [
        ("net1", "0000:01:00.0", "0000:01:00.0"), ("net2", "0000:02:00.0", "0000:02:00.0")]


def test_cni_args_and_identity():
    r = Recorder()
    pod(r, [Attachment(NAD)], ["0000:01:00.0"]).add()
    call = r.calls[0]
    assert call["env"]["CNI_ARGS"] == ("IgnoreUnknown=true;K8S_POD_NAMESPACE=ns1;"
                                       "K8S_POD_NAME=network-workload;"
                                       "K8S_POD_INFRA_CONTAINER_ID=sandbox1;K8S_POD_UID=uid-1")
    assert (call["cid"], call["netns"]) == ("sandbox1", "/var/run/netns/p")
    assert call["conf"]["name"] == NAD["name"] and call["conf"]["cniVersion"] == "1.0.0"


def test_conflist_gets_the_device_in_every_plugin_and_runs_like_libcni():
    r = Recorder()
    pod(r, [Attachment(CHAIN)], ["0000:01:00.0"]).add()
    assert [c["conf"]["type"] for c in r.calls] == ["amd-host-device", "rdma", "sbr"]
    assert all(c["conf"]["deviceID"] == c["conf"]["pciBusID"] == "0000:01:00.0" for c in r.calls)
    assert all(c["conf"]["name"] == "chain" and c["conf"]["cniVersion"] == "0.4.0"
               for c in r.calls)
    assert "prevResult" not in r.calls[0]["conf"]
    assert r.calls[1]["conf"]["prevResult"]["interfaces"][0]["name"] == "net1"


def test_named_interface_and_no_resource():
    r = Recorder()
    pod(r, [Attachment(NAD, resource=None, interface="fabric0")], []).add()
    assert r.calls[0]["ifname"] == "fabric0" and "deviceID" not in r.calls[0]["conf"]


def test_del_runs_in_reverse_with_the_cached_result_from_0_4_0():
    r = Recorder()
    p = pod(r, [Attachment(CHAIN), Attachment(NAD)], ["0000:01:00.0", "0000:02:00.0"])
    p.add()
    r.calls.clear()
    p.delete()
    assert [(c["command"], c["ifname"], c["conf"]["type"]) for c in r.calls] == [
        ("DEL", "net2", "amd-host-device"), ("DEL", "net1", "sbr"), ("DEL", "net1", "rdma"),
        ("DEL", "net1", "amd-host-device")]
    assert all("prevResult" in c["conf"] for c in r.calls)  # both >= 0.4.0


def test_no_prev_result_on_del_before_0_4_0():
    r = Recorder()
    old = {**NAD, "cniVersion": "0.3.1"}
    p = pod(r, [Attachment(old)], ["0000:01:00.0"])
    p.add()
    r.calls.clear()
    p.delete()
    assert "prevResult" not in r.calls[0]["conf"]


def test_a_failed_add_deletes_what_was_added_and_the_failed_one_in_reverse():
    r = Recorder(fail_on=("ADD", "net2", "amd-host-device"))
    p = pod(r, [Attachment(NAD), Attachment(NAD), Attachment(NAD)],
            ["0000:01:00.0", "0000:02:00.0", "0000:03:00.0"])
    with pytest.raises(MultusError):
        p.add()
    assert [(c["command"], c["ifname"]) for c in r.calls] == [
        ("ADD", "net1"), ("ADD", "net2"), ("DEL", "net2"), ("DEL", "net1")]
    assert r.calls[2]["conf"].get("prevResult") is None      # net2 was never added
    assert r.calls[3]["conf"]["prevResult"]["interfaces"][0]["name"] == "net1"
    r.calls.clear()
    p.delete()   # kubelet's DEL later: Multus DELs every cached delegate again
    assert [(c["command"], c["ifname"]) for c in r.calls] == [
        ("DEL", "net3"), ("DEL", "net2"), ("DEL", "net1")]
    assert all("prevResult" not in c["conf"] for c in r.calls)  # libcni's cache is gone


def test_not_enough_devices_is_an_error():
    with pytest.raises(ValueError):
        pod(Recorder(), [Attachment(NAD), Attachment(NAD)], ["0000:01:00.0"]).plan()


CAPS = {**NAD, "capabilities": {"deviceID": True, "CNIDeviceInfoFile": True}}


def test_runtime_config_only_for_declared_capabilities():
    r = Recorder()
    only_id = {**NAD, "capabilities": {"deviceID": True}}
    literal = {**NAD, "runtimeConfig": {"deviceID": "0000:09:00.0"}}
    pod(r, [Attachment(NAD), Attachment(only_id), Attachment(CAPS), Attachment(literal),
            Attachment(CAPS, resource=None, interface="nodev")],
        ["0000:01:00.0", "0000:02:00.0", "0000:03:00.0", "0000:04:00.0"]).add()
    confs = [c["conf"] for c in r.calls]
    assert "runtimeConfig" not in confs[0]
    assert confs[1]["runtimeConfig"] == {"deviceID": "0000:02:00.0"}
    assert confs[2]["runtimeConfig"] == {
        "deviceID": "0000:03:00.0",
        "CNIDeviceInfoFile": "/var/run/k8s.cni.cncf.io/devinfo/cni/"
                             "default-amd-host-device-nad-nic-sandbox1_net3"}
    assert confs[3]["runtimeConfig"] == {"deviceID": "0000:09:00.0"}  # untouched: undeclared
    assert "runtimeConfig" not in confs[4]     # no device: Multus passes no device-info file
    assert all(c["cniVersion"] == "1.0.0" for c in confs)


def test_del_carries_the_same_runtime_config_and_multus_removes_the_device_info_file():
    r = Recorder()
    removed = []
    p = pod(r, [Attachment(CAPS)], ["0000:01:00.0"])
    p.remove_file = removed.append
    p.add()
    added = r.calls[0]["conf"]["runtimeConfig"]
    r.calls.clear()
    p.delete()
    assert r.calls[0]["conf"]["runtimeConfig"] == added
    assert removed == [added["CNIDeviceInfoFile"]]


def test_a_retried_add_fails_in_multus_before_any_plugin_and_dels_what_it_added():
    r = Recorder()
    present = set()
    p = pod(r, [Attachment(NAD), Attachment(NAD)], ["0000:01:00.0", "0000:02:00.0"])
    p.ifname_exists = lambda ifname: ifname in present
    p.add()
    present.update({"net1", "net2"})
    r.calls.clear()
    with pytest.raises(MultusError, match=r"net1.*already exists"):
        p.add()
    assert [(c["command"], c["ifname"]) for c in r.calls] == [("DEL", "net1")]
    assert r.calls[0]["conf"]["prevResult"]["interfaces"][0]["name"] == "net1"


def test_network_status_is_built_as_multus_does():
    from tests.support.multus import network_status

    att = Attachment(NAD, namespace="ns1")
    result = {"cniVersion": "1.0.0", "interfaces": [{"name": "net1", "mac": "aa:bb:cc:dd:ee:01",
                                                     "sandbox": "/var/run/netns/p"}],
              "ips": [{"interface": 0, "address": "10.0.0.2/24"},
                      {"interface": 0, "address": "fd00::2/64"}]}
    info = {"type": "pci", "version": "1.1.0", "pci": {"pci-address": "0000:01:00.0"}}
    assert network_status([(att, "net1", result, info)]) == [{
        "name": "ns1/amd-host-device-nad-nic", "interface": "net1",
        "ips": ["10.0.0.2", "fd00::2"], "mac": "aa:bb:cc:dd:ee:01", "dns": {},
        "device-info": info}]
