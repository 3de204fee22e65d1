"""The node-targeted suite: the same tests on a simulated node here, on a node container, and
on kind workers. Everything on the node is driven and observed through the testinfra host."""

import json

from tests.support.multus import Attachment, MultusPod

NAD = {"cniVersion": "1.0.0", "name": "amd-host-device-nad-nic", "type": "amd-host-device"}


def nad(node, **extra):
    return {**NAD, "stateDir": node.state_dir, **extra}


def test_the_plugin_is_installed_and_answers_version(node):
    plugin = node.host.file(node.plugin)
    assert plugin.exists and plugin.mode & 0o111
    out = node.cni("VERSION", {"cniVersion": "1.1.0"})
    assert out.rc == 0 and "1.1.0" in out.json["supportedVersions"]


def test_seed_pod_gets_two_nics_from_the_same_nad_and_gives_them_back(node):
    netns = node.add_pod()
    pod = MultusPod(node, netns, [Attachment(nad(node)), Attachment(nad(node))],
                    allocated=[n.pci for n in node.nics])
    results = pod.add()
    assert [ifname for ifname, _ in results] == ["net1", "net2"]
    for nic, ifname in zip(node.nics, ("net1", "net2"), strict=True):
        assert node.addresses(ifname, netns) == {nic.v4}
        assert node.link(nic.name) is None
        assert node.ping(netns, nic.peer_v4)
        record = node.host.file(f"{node.state_dir}/attachments/{pod.sandbox}@{ifname}.json")
        assert record.exists and record.mode == 0o600
        assert json.loads(record.content_string)["snapshot"]["name"] == nic.name
    assert node.host.file(node.state_dir).mode == 0o700
    pod.delete()
    for nic in node.nics:
        link = node.link(nic.name)
        assert link and "UP" in link["flags"] and link["mtu"] == 9000
        assert node.addresses(nic.name) == {nic.v4}
    assert node.run(f"ls {node.state_dir}/attachments").stdout.split() == []


def test_del_is_idempotent_and_needs_no_device_id(node):
    netns = node.add_pod()
    nic = node.nics[0]
    conf = nad(node, deviceID=nic.pci)
    assert node.cni("ADD", conf, "c1", netns, "net1").rc == 0
    for _ in range(2):
        out = node.cni("DEL", nad(node), "c1", netns, "net1")
        assert out.rc == 0, out.stdout
    assert node.addresses(nic.name) == {nic.v4}


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
                    allocated=[node.nics[0].pci, "0000:7f:00.0"])
    try:
        pod.add()
        raise AssertionError("the second ADD should have failed")
    except Exception as e:  # MultusError
        assert "net2" in str(e)
    assert node.addresses(node.nics[0].name) == {node.nics[0].v4}
    assert node.link("net1", netns) is None
