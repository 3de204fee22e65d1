"""plugin/tools.py: which copy of each command runs. From a checkout, the node's by name (what
the whole suite runs with); from a bundle, the bundle's through its own loader, the command
nsenter execs included."""

import sys

import pytest

from plugin import noderoot, tools


def test_from_a_checkout_the_nodes_tools_run_by_name():
    assert tools.bundle_root() == ""
    assert [tools.tool(n).argv for n in tools.NAMES] == [("ip",), ("ethtool",), ("nsenter",),
                                                          ("/bin/sh",)]
    argv = ["nsenter", "--net=/proc/1/ns/net", "ip", "-j", "link"]
    assert tools.expand(argv) == argv
    assert not tools.tool("ip").bundled and tools.tool("ip").describe().startswith("node /")


@pytest.fixture
def bundled(monkeypatch):
    monkeypatch.setattr(tools, "_ROOT", "/b d")   # where the bundle's tools.py would find it
    return "/b d/lib/ld-linux-x86-64.so.2", "--library-path", "/b d/lib"


def test_from_a_bundle_every_tool_runs_through_the_bundles_loader(bundled):
    assert tools.expand(["ip", "-j", "link"]) == [*bundled, "--argv0", "ip", "/b d/libexec/ip",
                                                  "-j", "link"]
    assert tools.tool("sh").argv == (*bundled, "--argv0", "sh", "/b d/libexec/sh")
    assert tools.tool("ethtool").describe() == "bundled /b d/libexec/ethtool"


def test_the_command_nsenter_execs_is_the_bundled_one_too(bundled):
    argv = tools.expand(["nsenter", "--net=/run/netns/p", "ethtool", "-k", "net1"])
    assert argv == [*bundled, "--argv0", "nsenter", "/b d/libexec/nsenter", "--net=/run/netns/p",
                    *bundled, "--argv0", "ethtool", "/b d/libexec/ethtool", "-k", "net1"]


def test_other_commands_are_left_alone(bundled):
    assert tools.expand(["/usr/bin/containerd", "--version"]) == ["/usr/bin/containerd",
                                                                  "--version"]



def test_the_entry_is_what_the_launcher_says_was_execd(monkeypatch):
    """python3's argv[0] is the bundle's script; the launcher names the executable."""
    monkeypatch.setenv(noderoot.ENTRY_ENV, "/opt/cni/bin/amd-host-device")
    monkeypatch.setattr(sys, "argv", ["/b/lib/amd-host-device.py", "doctor"])
    assert noderoot.entry_path() == "/opt/cni/bin/amd-host-device"
