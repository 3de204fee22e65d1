"""Where the plugin runs (plugin/noderoot.py): whether another root holds this installation,
resolved as that root sees its own links; which error each command gets when the node's root
is out of reach; and the DEL safety net's proof that the attachment's NIC is in the pod.

Roots here are temp dirs; "the same installation" is a hard link (same st_dev/st_ino), as a bind
mount of the CNI bin dir is. The real thing (namespaces, chroot, re-exec) is
tests/integration/test_multus_thick.py."""

import os

import pytest

from plugin import delete, noderoot
from plugin.errors import NODE_ROOT_UNREACHABLE, NOT_AVAILABLE, TRY_AGAIN_LATER


@pytest.fixture
def entry(tmp_path):
    """Our installation, and a node root (PID 1's) that holds it at the same absolute path."""
    path = tmp_path / "opt" / "cni" / "bin" / "amd-host-device"
    path.parent.mkdir(parents=True)
    path.write_text("#!/bin/sh\n")
    return str(path)


def node_root_with(tmp_path, entry, how):
    root = tmp_path / "node"
    inside = root / entry.lstrip("/")
    inside.parent.mkdir(parents=True)
    if how == "same":
        os.link(entry, inside)
    elif how == "copy":
        inside.write_text("#!/bin/sh\n")
    return str(root)


def test_our_own_root_is_home(entry):
    assert noderoot.elsewhere(entry, root="/", ours="/") is False


def test_another_root_with_this_installation_is_the_node_to_enter(tmp_path, entry):
    assert noderoot.elsewhere(entry, root=node_root_with(tmp_path, entry, "same")) is True


@pytest.mark.parametrize("how", ["copy", "missing"])
def test_another_root_without_this_installation_is_out_of_reach(tmp_path, entry, how):
    """A copy at the same path is not this installation: acting on it would keep records
    where this process's caller will not look."""
    with pytest.raises(noderoot.Unreachable) as e:
        noderoot.elsewhere(entry, root=node_root_with(tmp_path, entry, how))
    assert entry in str(e.value)


def test_no_pid_1_to_look_at_is_home(tmp_path, entry):
    assert noderoot.elsewhere(entry, root=str(tmp_path / "no-proc")) is False


def test_absolute_links_resolve_in_the_node_root_not_ours(tmp_path):
    """A node whose CNI bin dir is a link to /usr/libexec/cni: the kernel would follow it into
    our root; stat_under follows it into the node's."""
    root = tmp_path / "node"
    real = root / "usr" / "libexec" / "cni"
    real.mkdir(parents=True)
    (real / "plugin").write_text("x")
    (root / "opt").mkdir()
    os.symlink("/usr/libexec/cni", root / "opt" / "bin")
    os.symlink("../libexec/cni/plugin", real.parent / "rel")
    want = os.stat(real / "plugin")
    for path in ("/opt/bin/plugin", "/usr/libexec/rel", "/opt/../opt/./bin/plugin"):
        got = noderoot.stat_under(str(root), path)
        assert (got.st_dev, got.st_ino) == (want.st_dev, want.st_ino), path


def test_a_link_loop_is_an_error_not_a_hang(tmp_path):
    (tmp_path / "a").symlink_to("/b")
    (tmp_path / "b").symlink_to("/a")
    with pytest.raises(OSError):
        noderoot.stat_under(str(tmp_path), "/a/x")


def test_entry_path_is_absolute_and_may_be_named(monkeypatch):
    monkeypatch.delenv(noderoot.ENTRY_ENV, raising=False)
    assert os.path.isabs(noderoot.entry_path())
    monkeypatch.setenv(noderoot.ENTRY_ENV, "/opt/cni/bin/amd-host-device")
    assert noderoot.entry_path() == "/opt/cni/bin/amd-host-device"


@pytest.mark.parametrize("command, code", [("DEL", TRY_AGAIN_LATER), ("STATUS", NOT_AVAILABLE),
                                           ("ADD", NODE_ROOT_UNREACHABLE),
                                           ("CHECK", NODE_ROOT_UNREACHABLE),
                                           ("GC", NODE_ROOT_UNREACHABLE)])
def test_out_of_reach_each_command_gets_its_code_and_the_fix(command, code):
    error = noderoot.error(command, "why")
    assert error.code == code and "why" in error.msg
    assert "chrootDir" in error.details and "hostPID" in error.details


def pci_link(ifname, pci):
    return {"ifname": ifname, "address": "aa:bb:cc:00:00:01", "parentbus": "pci",
            "parentdev": pci}


@pytest.mark.parametrize("links, found", [
    ([pci_link("net1", "0000:03:00.0")], True),
    ([pci_link("net1", "0000:04:00.0")], False),           # another NIC as net1
    ([pci_link("net2", "0000:03:00.0")], False),           # the NIC, under another name
    ([{"ifname": "net1", "address": "aa:bb:cc:00:00:01"}], False),   # a veth named net1
    ([{"ifname": "net1", "parentbus": "usb", "parentdev": "0000:03:00.0"}], False),
    ([], False),
])
def test_the_del_safety_net_proves_the_nic_by_its_pci_parent(links, found):
    assert delete.nic_in_pod(links, "0000:03:00.0", "net1") is found
