"""What Multus users see: IPv6 usable when ADD returns, and the NPWG device-info file.

Every test runs in process and through the resident daemon (thick mode).
"""

import json
import os

import pytest

from tests.support.checks import ok
from tests.support.simnode import sh

# Every test twice: in process, and through the daemon (conftest.py).
pytestmark = pytest.mark.usefixtures("transport")


def _name(pod):
    return pod.rsplit("/", 1)[1]


def _v6(node, ns, ifname, address):
    link = node.link(ns, ifname) or {}
    return next((a for a in link.get("addr_info", []) if a["local"] == address), None)


def _cni_dir(node):
    return os.path.join(node.devinfo_root, "cni")


def _with_devinfo(node, pci, name="default-amd-nic-c1_net1", version="1.0.0"):
    path = os.path.join(_cni_dir(node), name)
    return path, node.conf(pci, version, runtimeConfig={"deviceID": pci, "CNIDeviceInfoFile": path})


# -- IPv6 ------------------------------------------------------------------------------------

def test_ipv6_is_usable_the_moment_add_returns(node, pod):
    nic = node.nics[0]
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    assert node.ping(_name(pod), nic.peer_v6)  # one ping6, no retry
    address = _v6(node, _name(pod), "net1", nic.v6.split("/")[0])
    assert address is not None and not address.get("tentative")
    # the pod's default is as it was, and the NIC's own setting follows it again
    values = sh("ip", "netns", "exec", _name(pod), "sysctl", "-n",
                "net.ipv6.conf.default.accept_dad", "net.ipv6.conf.net1.accept_dad").stdout
    assert values.split() == ["1", "1"]
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))
    assert _v6(node, node.node, nic.name, nic.v6.split("/")[0]).get("nodad") is True


def test_an_address_still_tentative_on_the_node_is_settled_before_add_returns(node, pod):
    nic = node.nics[0]
    extra = nic.v6.replace("::2/", "::7/")
    sh("ip", "-n", node.node, "addr", "add", extra, "dev", nic.name)  # DAD still running
    assert _v6(node, node.node, nic.name, extra.split("/")[0]).get("tentative")
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    for address in (extra, nic.v6):
        found = _v6(node, _name(pod), "net1", address.split("/")[0])
        assert found is not None and not found.get("tentative"), found
    assert node.ping(_name(pod), nic.peer_v6)
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))
    home = _v6(node, node.node, nic.name, extra.split("/")[0])
    assert home is not None and not home.get("nodad")  # the node's flags come home


def test_an_address_that_fails_dad_is_an_add_error_naming_it_and_add_rolls_back(node, pod):
    nic = node.nics[0]
    taken = nic.peer_v6.replace("::1", "::9")
    sh("ip", "-n", node.tor, "addr", "add", f"{taken}/64", "dev", "tor1", "nodad")
    sh("ip", "-n", node.node, "addr", "add", f"{taken}/64", "dev", nic.name)  # DAD will fail
    call = node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1")
    assert call.rc != 0 and call.json["code"] == 101, call.stdout
    assert f"{taken}/64" in call.json["msg"] and "duplicate address detection" in call.json["msg"]
    assert node.link(_name(pod), "net1") is None
    assert {nic.v4, nic.v6, f"{taken}/64"} <= node.addresses(node.node, nic.name)
    assert os.listdir(os.path.join(node.state_dir, "attachments")) == []


# -- device-info -----------------------------------------------------------------------------

def test_device_info_is_written_for_multus_and_removed_on_a_del_without_runtime_config(node, pod):
    nic = node.nics[0]
    path, conf = _with_devinfo(node, nic.pci)
    ok(node.cni("ADD", conf, "c1", pod, "net1"))
    with open(path) as f:
        assert json.load(f) == {"type": "pci", "version": "1.1.0",
                                "pci": {"pci-address": nic.pci}}
    assert not os.path.islink(path)
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))  # no runtimeConfig
    assert not os.path.lexists(path)


def test_device_info_names_the_pf_of_a_vf(node, pod):
    nic = node.nics[0]
    pf = "0000:81:00.0"
    os.makedirs(os.path.join(node.sysfs, "bus", "pci", "devices", pf), exist_ok=True)
    os.symlink(f"../{pf}", os.path.join(node.sysfs, "bus", "pci", "devices", nic.pci, "physfn"))
    path, conf = _with_devinfo(node, nic.pci)
    ok(node.cni("ADD", conf, "c1", pod, "net1"))
    with open(path) as f:
        assert json.load(f)["pci"] == {"pci-address": nic.pci, "pf-pci-address": pf}
    ok(node.cni("DEL", conf, "c1", pod, "net1"))
    assert not os.path.lexists(path)


@pytest.mark.parametrize("where", ["elsewhere", "dp", "dotdot", "relative", "cni-dir-itself"])
def test_a_device_info_path_outside_multus_dir_is_refused_and_nothing_is_written(
        node, pod, untouched, where):
    nic = node.nics[0]
    target = {"elsewhere": os.path.join(node.tmp, "stolen.json"),
              "dp": os.path.join(node.devinfo_root, "dp", "x.json"),
              "dotdot": os.path.join(_cni_dir(node), "..", "..", "stolen.json"),
              "relative": "devinfo/cni/x.json",
              "cni-dir-itself": _cni_dir(node)}[where]
    conf = node.conf(nic.pci, runtimeConfig={"CNIDeviceInfoFile": target})
    call = node.cni("ADD", conf, "c1", pod, "net1")
    assert call.rc != 0 and call.json["code"] == 7, call.stdout
    assert "CNIDeviceInfoFile" in call.json["msg"]
    assert not os.path.exists(os.path.join(node.tmp, "stolen.json"))
    assert not os.path.exists(node.devinfo_root)
    untouched()
    ok(node.cni("DEL", conf, "c1", pod, "net1"))  # Multus's clean-up DEL of that ADD


def test_a_planted_symlink_is_replaced_never_written_through(node, pod):
    nic = node.nics[0]
    victim = os.path.join(node.tmp, "victim")
    with open(victim, "w") as f:
        f.write("precious\n")
    path, conf = _with_devinfo(node, nic.pci)
    os.makedirs(_cni_dir(node))
    os.symlink(victim, path)
    ok(node.cni("ADD", conf, "c1", pod, "net1"))
    with open(victim) as f:
        assert f.read() == "precious\n"
    assert not os.path.islink(path)
    ok(node.cni("DEL", conf, "c1", pod, "net1"))
    assert not os.path.lexists(path) and os.path.exists(victim)


def test_a_symlinked_devinfo_dir_is_an_error_and_the_node_is_untouched(node, pod, untouched):
    nic = node.nics[0]
    elsewhere = os.path.join(node.tmp, "elsewhere")
    os.makedirs(os.path.join(node.devinfo_root))
    os.makedirs(elsewhere)
    os.symlink(elsewhere, _cni_dir(node))
    _, conf = _with_devinfo(node, nic.pci)
    call = node.cni("ADD", conf, "c1", pod, "net1")
    assert call.rc != 0 and call.json["code"] == 5, call.stdout
    assert os.listdir(elsewhere) == []
    untouched()


def test_a_device_plugins_file_copied_by_multus_is_left_alone(node, pod):
    nic = node.nics[0]
    path, conf = _with_devinfo(node, nic.pci)
    os.makedirs(_cni_dir(node))
    theirs = {"type": "pci", "version": "1.1.0", "pci": {"pci-address": nic.pci,
                                                         "rdma-device": "ionic_0"}}
    with open(path, "w") as f:
        json.dump(theirs, f)
    ok(node.cni("ADD", conf, "c1", pod, "net1"))
    with open(path) as f:
        assert json.load(f) == theirs
    ok(node.cni("DEL", conf, "c1", pod, "net1"))
    assert os.path.exists(path)  # Multus removes its own copy


def test_an_address_the_node_held_without_dad_gets_none_in_the_pod(node, pod):
    """The proof that the pod runs no second DAD: another host answering for the node's
    `nodad` address would fail one."""
    nic = node.nics[0]
    sh("ip", "-n", node.tor, "addr", "add", nic.v6, "dev", "tor1", "nodad")
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    found = _v6(node, _name(pod), "net1", nic.v6.split("/")[0])
    assert found is not None and not found.get("tentative") and not found.get("dadfailed")
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))


def test_a_pod_that_skips_dad_already_keeps_its_setting(node, pod):
    nic = node.nics[0]
    sh("ip", "netns", "exec", _name(pod), "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0")
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    assert node.ping(_name(pod), nic.peer_v6)
    values = sh("ip", "netns", "exec", _name(pod), "sysctl", "-n",
                "net.ipv6.conf.default.accept_dad", "net.ipv6.conf.net1.accept_dad").stdout
    assert values.split() == ["0", "0"]
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))


def test_two_parallel_adds_into_one_pod_are_usable_at_once_and_the_pod_keeps_its_default(node, pod):
    """Two ADDs into one pod at once (a runtime running two conflists, or two Multus
    attachments run in parallel, each turning the pod's default accept_dad off and back):
    both NICs' addresses are usable when ADD returns, and the pod's default is its own again."""
    from concurrent.futures import ThreadPoolExecutor

    a, b = node.nics
    with ThreadPoolExecutor(2) as pool:
        calls = list(pool.map(lambda job: node.cni("ADD", node.conf(job[0].pci), "c1", pod,
                                                   job[1]), ((a, "net1"), (b, "net2"))))
    for call in calls:
        ok(call)
    for nic, ifname in ((a, "net1"), (b, "net2")):
        found = _v6(node, _name(pod), ifname, nic.v6.split("/")[0])
        assert found is not None and not found.get("tentative") and not found.get("dadfailed")
    default = sh("ip", "netns", "exec", _name(pod), "sysctl", "-n",
                 "net.ipv6.conf.default.accept_dad").stdout.strip()
    assert default == "1"
    for nic, ifname in ((b, "net2"), (a, "net1")):
        ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, ifname))
