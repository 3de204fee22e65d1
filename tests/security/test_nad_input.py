"""A NAD is tenant input: nothing in it may override the device the device plugin allocated,
run a plugin the node did not allow as IPAM, create links or write files on the node through
IPAM, or (a long network name) lose the NIC. Real ip, the real host-device, veth NICs in
namespaces (tests/support/simnode.py); each test failed on the code it was written against.
"""

import os

from tests.support.checks import attachments, ok, records, restored


def node_links(node):
    return sorted(x["ifname"] for x in node.ip_json(node.node, "link"))


def test_a_long_network_name_never_loses_the_nic(node, pod):
    """`name` is stored in the record, which reads back only names of <= 317 printable
    characters: a 318-character name (libcni's name rule has no length limit, host-device
    takes it) made DEL set the record aside as corrupt and leave the NIC in the pod for good."""
    nic = node.nics[0]
    conf = node.conf(nic.pci, name="n" * 318)
    call = node.cni("ADD", conf, "c1", pod, "net1")
    if call.rc != 0:  # refusing the name up front is a fix too
        assert call.json["code"] == 7 and "name" in call.json["msg"], call.stdout
        assert restored(node, nic) and records(node) == []
        return
    ok(node.cni("DEL", conf, "c1", pod, "net1"))
    assert restored(node, nic), "the NIC was never given back"
    assert records(node) == []
    assert not [n for n in os.listdir(attachments(node)) if ".corrupt." in n]


def test_a_nads_literal_runtime_config_cannot_override_the_allocated_device(node, pod):
    """Multus injects the device plugin's allocation as top-level `deviceID`/`pciBusID`;
    libcni leaves a NAD's literal `runtimeConfig` alone unless the NAD declares capabilities.
    runtimeConfig.deviceID won over the injected key, so a tenant picked any NIC (another pod's
    allocation) while holding a different one in the scheduler's books."""
    a, b = node.nics
    conf = node.conf(a.pci, runtimeConfig={"deviceID": b.pci})  # A: what Multus injected
    call = node.cni("ADD", conf, "c1", pod, "net1")
    assert restored(node, b), "a NIC the device plugin did not allocate was taken"
    if call.rc == 0:
        ok(node.cni("DEL", conf, "c1", pod, "net1"))
    else:
        assert call.json["code"] == 7, call.stdout
    assert restored(node, a) and records(node) == []


def test_nad_ipam_cannot_create_links_on_the_node(node, pod, untouched):
    """`ipam.type` runs any CNI plugin in CNI_PATH, as root, in the node's netns, with a config
    we built: `bridge` creates (and leaves) `cni0` on the node before it fails."""
    nic = node.nics[0]
    before = node_links(node)
    call = node.cni("ADD", node.conf(nic.pci, ipam={"type": "bridge"}), "c1", pod, "net1")
    assert call.rc != 0
    assert node_links(node) == before, "the NAD's ipam plugin created links on the node"
    untouched()


def test_nad_ipam_type_is_not_an_arbitrary_plugin(node, pod, tmp_path):
    """The real `ptp` as `ipam.type` runs itself as its own IPAM without end (~250 processes a
    second; the delegate timeout kills host-device only, the chain goes on): a fork bomb from
    one NAD. A stand-in `ptp` that only leaves a mark shows the NAD chose what runs; the real
    host-device and static are used."""
    nic = node.nics[0]
    cni = tmp_path / "cni"
    cni.mkdir()
    for name in ("host-device", "static"):
        os.symlink(f"/usr/lib/cni/{name}", cni / name)
    mark = tmp_path / "ptp-ran"
    (cni / "ptp").write_text(f"#!/bin/sh\ntouch {mark}\n"
                             'echo \'{"cniVersion":"1.0.0","code":7,"msg":"stand-in"}\'\n'
                             "exit 1\n")
    (cni / "ptp").chmod(0o755)
    call = node.cni("ADD", node.conf(nic.pci, ipam={"type": "ptp"}), "c1", pod, "net1",
                    cni_path=str(cni))
    assert not mark.exists(), "a NAD picked a CNI plugin for the node to run as root"
    assert call.rc != 0 and restored(node, nic) and records(node) == []


def test_nad_ipam_cannot_write_files_on_the_node(node, pod, tmp_path):
    """host-local as the NAD's ipam writes its leases under the NAD's `dataDir`: any
    directory on the node, created as root (the state dir is node policy, this is not)."""
    nic = node.nics[0]
    outside = tmp_path / "etc-somewhere"
    conf = node.conf(nic.pci, ipam={"type": "host-local", "dataDir": str(outside),
                                    "ranges": [[{"subnet": "10.250.0.0/24"}]]})
    call = node.cni("ADD", conf, "c1", pod, "net1")
    if call.rc == 0:
        ok(node.cni("DEL", conf, "c1", pod, "net1"))
    assert not outside.exists(), "the NAD's ipam wrote files outside the state dir"
    assert restored(node, nic) and records(node) == []
