"""The node-targeted suite: the same tests on a simulated node here, on a node container, and
on kind workers. Everything on the node is driven and observed through the testinfra host.
Pods are run the way the real Multus runs them (tests/support/multus.py)."""

import json

import pytest

from tests.support.multus import Attachment, MultusError, MultusPod, network_status

NAD = {"cniVersion": "1.0.0", "name": "amd-host-device-nad-nic", "type": "amd-host-device",
       "capabilities": {"deviceID": True, "CNIDeviceInfoFile": True}}


def nad(node, **extra):
    return {**NAD, "stateDir": node.state_dir, **extra}


class Recording:
    """The node as a Multus runner, keeping every plugin call's command, ifname and config."""

    def __init__(self, node):
        self.node = node
        self.calls = []

    def cni(self, command, conf, *args, **kwargs):
        self.calls.append((command, args[2] if len(args) > 2 else kwargs.get("ifname"), conf))
        return self.node.cni(command, conf, *args, **kwargs)


def seed_pod(node, netns, version="1.0.0", runner=None):
    """The seed's pod: the same NAD twice, amd.com/nic: 2."""
    return MultusPod(runner or node, netns, [Attachment(nad(node, cniVersion=version))] * 2,
                     allocated=[n.pci for n in reversed(node.nics)],
                     devinfo_root=node.devinfo_root, ifname_exists=node.has_link(netns),
                     remove_file=node.remove_file)


def test_the_plugin_is_installed_and_answers_version(node):
    plugin = node.host.file(node.plugin)
    assert plugin.exists and plugin.mode & 0o111
    out = node.cni("VERSION", {"cniVersion": "1.1.0"})
    assert out.rc == 0 and "1.1.0" in out.json["supportedVersions"]


@pytest.mark.parametrize("version", ["0.3.1", "1.0.0"])
def test_seed_pod_gets_two_nics_from_the_same_nad_and_gives_them_back(node, version):
    netns = node.add_pod()
    runner = Recording(node)
    pod = seed_pod(node, netns, version, runner)
    results = pod.add()
    assert [ifname for ifname, _ in results] == ["net1", "net2"]
    for nic, (ifname, result) in zip(node.nics, results, strict=True):  # sorted device IDs
        assert result["cniVersion"] == version
        assert node.addresses(ifname, netns) == {nic.v4, nic.v6} - {""}
        assert node.link(nic.name) is None
        assert node.ping(netns, nic.peer_v4)
        if nic.v6:
            assert node.ping(netns, nic.peer_v6)   # once, right after ADD: no retry
        record = node.host.file(f"{node.state_dir}/attachments/{pod.sandbox}@{ifname}.json")
        assert record.exists and record.mode == 0o600
        assert json.loads(record.content_string)["snapshot"]["name"] == nic.name
    assert node.host.file(node.state_dir).mode == 0o700
    infos = [node.read_json(p.device_info) for p in pod.cache]
    status = network_status([(p.attachment, p.ifname, result, info) for p, (_, result), info
                             in zip(pod.cache, results, infos, strict=True)])
    assert [s["device-info"]["pci"]["pci-address"] for s in status] == [n.pci for n in node.nics]
    assert all(s["device-info"]["type"] == "pci" for s in status)
    runner.calls.clear()
    pod.delete()
    assert [(c, i) for c, i, _ in runner.calls] == [("DEL", "net2"), ("DEL", "net1")]
    assert all(("prevResult" in conf) == (version == "1.0.0") for _, _, conf in runner.calls)
    assert all(conf["runtimeConfig"]["CNIDeviceInfoFile"] for _, _, conf in runner.calls)
    for nic in node.nics:
        link = node.link(nic.name)
        assert link and "UP" in link["flags"] and link["mtu"] == 9000
        assert node.addresses(nic.name) == {nic.v4, nic.v6} - {""}
    assert node.run(f"ls {node.state_dir}/attachments").stdout.split() == []
    assert node.run(f"ls -A {node.devinfo_root}/cni").stdout.split() == []


def test_a_retried_add_fails_in_multus_and_its_del_gives_the_nic_back(node):
    """kubelet retries ADD for a sandbox whose ADD it thinks failed: Multus finds net1 in the
    pod, fails before our plugin runs, and DELs net1; kubelet's DEL later gets the rest."""
    netns = node.add_pod()
    pod = seed_pod(node, netns)
    pod.add()
    with pytest.raises(MultusError, match="already exists"):
        pod.add()
    first, second = node.nics
    assert node.addresses(first.name) == {first.v4, first.v6} - {""}
    assert node.link("net1", netns) is None and node.link("net2", netns) is not None
    pod.delete()
    assert node.addresses(second.name) == {second.v4, second.v6} - {""}
    assert node.run(f"ls {node.state_dir}/attachments").stdout.split() == []


def test_device_info_outside_multus_dir_is_refused(node):
    netns = node.add_pod()
    nic = node.nics[0]
    before = [node.addresses(n.name) for n in node.nics]
    conf = nad(node, deviceID=nic.pci, runtimeConfig={"CNIDeviceInfoFile": f"{node.root}/x"})
    out = node.cni("ADD", conf, "c1", netns, "net1")
    assert out.rc != 0 and out.json["code"] == 7
    assert node.read_json(f"{node.root}/x") is None
    assert [node.addresses(n.name) for n in node.nics] == before


def test_del_is_idempotent_and_needs_no_device_id(node):
    netns = node.add_pod()
    nic = node.nics[0]
    conf = nad(node, deviceID=nic.pci)
    assert node.cni("ADD", conf, "c1", netns, "net1").rc == 0
    for _ in range(2):
        out = node.cni("DEL", nad(node), "c1", netns, "net1")
        assert out.rc == 0, out.stdout
    assert node.addresses(nic.name) == {nic.v4, nic.v6} - {""}


def test_bad_input_is_an_error_object_and_touches_nothing(node):
    netns = node.add_pod()
    before = [node.addresses(n.name) for n in node.nics]
    out = node.cni("ADD", nad(node, deviceID="../../etc"), "c1", netns, "net1")
    assert out.rc != 0 and set(out.json) == {"cniVersion", "code", "msg", "details"}
    assert out.json["code"] == 7
    assert [node.addresses(n.name) for n in node.nics] == before


def test_a_multus_rollback_leaves_the_node_as_it_was(node):
    """The second attachment fails (its device is unknown): Multus DELs both, in reverse."""
    netns = node.add_pod()
    pod = MultusPod(node, netns, [Attachment(nad(node)), Attachment(nad(node))],
                    allocated=[node.nics[0].pci, "0000:7f:00.0"],
                    devinfo_root=node.devinfo_root, remove_file=node.remove_file)
    with pytest.raises(MultusError, match="net2"):
        pod.add()
    assert node.addresses(node.nics[0].name) == {node.nics[0].v4, node.nics[0].v6} - {""}
    assert node.link("net1", netns) is None
    pod.delete()   # kubelet's DEL of the failed sandbox: idempotent
    assert node.run(f"ls {node.state_dir}/attachments").stdout.split() == []
