"""Third red team: attacks on the one-shell command runner (plugin/shell.py), ADD's single
`ip -d -N -batch` read with the uplink guard on numeric output, and DEL's fast path and
ethtool diff (plugin/giveback.py). Each test FAILS on the code it was written against and
passes once the attack is refused, unless its docstring says it is a passing regression test.
Real ip, the real host-device, veth NICs in namespaces (tests/support/simnode.py); the node is
cleaned by the fixtures; anything that could hang is bounded by a timeout.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess

import pytest

from plugin import node as shell
from tests.support.checks import REAL_IP, ns, ok, records, restored, script
from tests.support.simnode import sh


def _ip_signaller(tmp_path, pattern, sig="TERM"):
    """An `ip` first in PATH that sends `sig` to the plugin when its argv matches the shell
    case `pattern` (once), then answers as the real ip would, a moment later: the runtime's
    timeout kill arriving while a command is in flight, the likeliest moment (commands are
    most of a request's time)."""
    d = tmp_path / "bin"
    d.mkdir(exist_ok=True)
    once = tmp_path / "signalled"
    script(d, "ip", f'case "$*" in {pattern})\n'
           f'  if [ ! -e {once} ]; then touch {once}\n'
           '  p=$PPID; while case "$(cat /proc/$p/comm)" in timeout|sh|dash) true;; *) false;; esac\n'
           '  do p=$(cut -d" " -f4 /proc/$p/stat); done\n'
           f'  kill -{sig} $p; sleep 1; fi;; esac\nexec {REAL_IP} "$@"\n')
    return {"PATH": f"{d}:{os.environ['PATH']}"}


# -- plugin/shell.py: framing after an interrupted command ----------------------------------

class _Interrupted(Exception):
    pass


def test_a_command_interrupted_by_a_signal_does_not_answer_the_next_one(fresh_shell):
    """The plugin turns SIGTERM into SystemExit (plugin/main.py) and ADD then rolls back
    with more commands, in the same shell. An exception raised out of shell.run while a
    command is in flight leaves its output and end marker to come; the next command's wait
    finds that marker and returns the interrupted command's output and exit code as its own,
    and so on: every later command in the process gets the answer of the one before.
    Safe: the next command gets its own answer (e.g. the interrupted shell is discarded)."""
    def interrupt(*_):
        raise _Interrupted()
    old = signal.signal(signal.SIGUSR1, interrupt)
    try:
        with contextlib.suppress(_Interrupted):
            shell.run(["sh", "-c", f"kill -USR1 {os.getpid()}; sleep 0.5; echo first; exit 3"],
                      seconds=30)
        second = shell.run(["echo", "second"], seconds=30)
        third = shell.run(["echo", "third"], seconds=30)
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert second == (0, "second\n", "")
    assert third == (0, "third\n", "")


def test_a_command_that_exits_without_reading_its_stdin_does_not_shift_the_framing(
        fresh_shell):
    """A request's stdin lines are copied to the command by a subshell on the left of a pipe
    (plugin/shell.py). When the command exits before reading them all (`ip -batch -` without
    -force stops at its first failing line; `timeout` kills a hung ip; argv[0] not found)
    and the lines do not fit the pipe, the copier dies of SIGPIPE and the lines it did not
    copy stay on the shell's stdin: the shell reads them as the next requests (timeout, argc,
    argv words...), so every later command gets the answer of a phantom one ("[: Illegal
    number", exit 125). Safe: the next command gets its own answer."""
    shell.run(["true"], ["x" * 100] * 3000, seconds=30)
    assert shell.run(["echo", "next"], seconds=30) == (0, "next\n", "")


def test_sigterm_while_a_command_runs_in_add_still_rolls_back(node, pod, tmp_path):
    """The runtime's SIGTERM arrives while ADD reads the NIC in the pod after host-device
    moved it (`ip -n POD -j -d link show dev net1`, the record says "moving"). ADD rolls back
    through the same command shell, whose answers are now one command behind: the rollback
    reads the wrong JSON for every step and fails, leaving the NIC on the node unconfigured
    under a temporary name. Safe: ADD fails and the rollback restores the NIC, as it does
    for a SIGTERM during host-device (tests/integration/test_crash.py)."""
    nic = node.nics[0]
    call = node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1",
                    extra_env=_ip_signaller(tmp_path, '*"-j -d link show dev net1"*'))
    assert (tmp_path / "signalled").exists()
    assert call.rc != 0
    assert restored(node, nic) and records(node) == []


# -- plugin/giveback.py: the pod racing DEL ---------------------------------------------------

def _racing_host_device(tmp_path, body):
    """A CNI dir whose host-device first runs `body` (shell, $P = the pod's netns name) on
    the first DEL, then the real host-device: the hostile pod acting in the window between
    the plugin's read of the pod and host-device's move (it can loop on `ip monitor`)."""
    cni = tmp_path / "cni"
    cni.mkdir(exist_ok=True)
    once = tmp_path / "raced"
    script(cni, "host-device", f'if [ "$CNI_COMMAND" = DEL ] && [ ! -e {once} ]; then\n'
           f'  touch {once}; P=$(basename "$CNI_NETNS")\n  {body}\nfi\n'
           'exec /usr/lib/cni/host-device\n')
    shutil.copy("/usr/lib/cni/static", cni / "static")
    return {"cni_path": str(cni), "extra_env": {"AMD_HOST_DEVICE_FALLBACK_DIRS": ""}}


def _holders(node, address):
    """(name, MAC) of every node link that has `address`."""
    return [(x["ifname"], x["address"]) for x in node.ip_json(node.node, "addr") or []
            if any(f"{a['local']}/{a['prefixlen']}" == address for a in x.get("addr_info", []))]


def test_a_pod_veth_swapped_in_before_hostdevice_del_never_gets_the_nics_config(node, pod,
                                                                                tmp_path):
    """After the plugin read the pod (fast path: the NIC's alias is still its node name), the
    pod renames the NIC away and creates a veth named CNI_IFNAME with alias = the NIC's node
    name. host-device moves that veth to the node, where it takes the NIC's name; DEL says
    "not provably" (good). But the retried DEL brings the NIC home as ahd..., fails to rename
    it (the pod's veth holds the name) and still applies the restore batch by name: the
    node's addresses, MTU and up go onto the pod's veth, whose peer is in the pod (the pod
    now receives the node's traffic for that subnet), and the NIC stays unconfigured under a
    temporary name; every later DEL fails the same way. Safe: no link but the proven NIC is
    ever configured, and a retried DEL either restores the NIC or fails without touching
    another link."""
    nic = node.nics[0]
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    race = _racing_host_device(tmp_path, 'ip -n $P link set dev "$CNI_IFNAME" name hide; '
                               'ip -n $P link add "$CNI_IFNAME" type veth peer name p1; '
                               f'ip -n $P link set dev "$CNI_IFNAME" alias {nic.name}')
    node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1", **race)
    assert (tmp_path / "raced").exists()
    for _ in range(2):   # the runtime retries DEL
        node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1")
    mac = node.macs[nic.pci]
    assert _holders(node, nic.v4) in ([], [(nic.name, mac)])


# -- what `ip -j` prints, as the plugin parses it ---------------------------------------------

def _ip_bytes(netns, *argv):
    subprocess.run([b"ip", b"-n", netns.encode(), *argv], check=True, capture_output=True,
                   timeout=30)


def _lenient_ip_json(netns, *args):
    """SimNode.ip_json, but reading control characters (the harness must see the node)."""
    out = sh("ip", "-n", netns, "-j", *args, check=False)
    return json.loads(out.stdout, strict=False) if out.returncode == 0 and out.stdout.strip() \
        else None


@pytest.mark.parametrize("argv", [
    (b"link", b"set", b"dev", b"net1", b"alias", b"x\x01y"),
    (b"link", b"property", b"add", b"dev", b"net1", b"altname", b"x\x01y"),
], ids=["alias", "altname"])
def test_a_control_character_the_pod_puts_in_its_nics_alias_or_altname_does_not_wedge_del(
        node, pod, argv):
    """`ip -j` escapes newline, tab, quote and backslash but prints other control characters
    raw; the kernel allows them in an alias (any bytes) and in an altname. The plugin parses
    `ip -j` strictly (json.JSONDecoder()), so DEL's read of the pod fails with "internal
    error: JSONDecodeError" (code 999), every time: the pod keeps the node NIC and its sandbox
    cannot be torn down. Safe: DEL proves the NIC and gives it back restored."""
    nic = node.nics[0]
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    _ip_bytes(ns(pod), *argv)
    call = node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1")
    assert call.rc == 0, call.stdout
    assert restored(node, nic) and records(node) == []


def test_a_nic_the_kernel_sent_home_with_a_control_character_alias_does_not_stop_every_add(
        node, pod, monkeypatch):
    """The pod sets an alias with a control character on its NIC, then its netns dies: the
    kernel returns a physical NIC to the node with that alias (simulated by moving it). Every
    ADD reads all the node's links in one `ip -j -d -N -batch` (the uplink guard), which no
    longer parses: every ADD of every NIC on the node fails with code 999, and so does the DEL
    that should bring this NIC back. One tenant pod takes the node's NICs from all pods.
    Safe: the other NIC attaches, and DEL restores the returned one."""
    nic, other = node.nics
    monkeypatch.setattr(node, "ip_json", lambda netns, *args: _lenient_ip_json(netns, *args))
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    _ip_bytes(ns(pod), b"link", b"set", b"dev", b"net1", b"alias", b"x\x01y")
    sh("ip", "-n", ns(pod), "link", "set", "dev", "net1", "netns", node.node)
    node.remove_pod(ns(pod))
    pod2 = node.netns_path(node.add_pod())
    added = node.cni("ADD", node.conf(other.pci), "c2", pod2, "net1")
    deleted = node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1")
    assert added.rc == 0, added.stdout
    assert deleted.rc == 0, deleted.stdout
    assert restored(node, nic)


@pytest.mark.parametrize("body", [
    'ip -n $P link set dev "$CNI_IFNAME" alias ens1f1',
    'ip -n $P link property add dev "$CNI_IFNAME" altname ens1f1',
    'ip -n $P link set dev "$CNI_IFNAME" alias lo',
    'ip -n $P link set dev "$CNI_IFNAME" alias ""',
    'ip -n $P link add ens1f0 type veth peer name p1',
], ids=["alias-other-nic", "altname-other-nic", "alias-lo", "alias-empty", "pod-link-named-nic"])
def test_the_pod_changing_the_nic_after_the_fast_path_check_is_recovered_by_a_retried_del(
        node, pod, tmp_path, body):
    """Passing regression test. Between DEL's read of the pod (alias == node name, no
    altnames: the fast path) and host-device's move, the pod points the alias at another
    node link, adds an altname that is one, empties the alias, or creates a pod link with
    the node name. host-device fails (EEXIST/ERANGE) and names the NIC back; the record is
    kept, the other NIC untouched, and the retried DEL takes the slow path and restores it."""
    nic, other = node.nics
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1", **_racing_host_device(tmp_path, body))
    assert (tmp_path / "raced").exists()
    assert restored(node, other)
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))
    assert restored(node, nic) and restored(node, other) and records(node) == []


def test_a_nic_name_that_is_not_utf8_does_not_send_a_pod_veth_home_in_its_place(node, pod):
    """No race needed: the pod renames its NIC to the bytes ff fe (not UTF-8; the kernel
    allows it) and creates a veth named ef bf bd ef bf bd (UTF-8 of U+FFFD U+FFFD) with alias
    = the NIC's node name. `ip -j` output is decoded with errors="replace", so the proven NIC
    is "\\ufffd\\ufffd" to the plugin, and every command it sends with that name (host-device's
    CNI_IFNAME, `ip link set dev`) names the veth: DEL moves the pod's veth to the node, where
    it takes the NIC's name, and every later DEL fails ("cannot set the alias of ..."): the
    pod keeps the node NIC for good, and a link whose peer is in the pod sits on the node
    under the NIC's name (anything that configures the node by name configures the pod's
    link). Safe: only the proven NIC ever leaves the pod, and a DEL restores it."""
    nic = node.nics[0]
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    twin = b"\xef\xbf\xbd\xef\xbf\xbd"
    _ip_bytes(ns(pod), b"link", b"set", b"dev", b"net1", b"name", b"\xff\xfe")
    _ip_bytes(ns(pod), b"link", b"add", twin, b"type", b"veth", b"peer", b"name", b"p1")
    _ip_bytes(ns(pod), b"link", b"set", b"dev", twin, b"alias", nic.name.encode())
    for _ in range(3):   # the runtime retries DEL
        if node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1").rc == 0:
            break
    home = node.link(node.node, nic.name)
    assert home is None or home["address"] == node.macs[nic.pci]
    assert restored(node, nic) and records(node) == []


def _bytes_ip_json(netns, *args):
    """SimNode.ip_json for a node with a link name that is not UTF-8 (the harness must see
    the node, and sync_sysfs must mirror the name's bytes)."""
    p = subprocess.run(["ip", "-n", netns, "-j", *args], capture_output=True, timeout=30)
    out = p.stdout.decode("utf-8", "surrogateescape")
    return json.loads(out, strict=False) if p.returncode == 0 and out.strip() else None


def test_a_nic_the_kernel_sent_home_with_a_name_that_is_not_utf8_is_restored(node, pod,
                                                                             monkeypatch):
    """The pod renames its NIC to the bytes ff fe, then its netns dies: the kernel returns
    a physical NIC to the node under that name (simulated by moving it). DEL proves it by
    identity but knows its name only as "\\ufffd\\ufffd" (`ip -j` decoded with
    errors="replace"), so the argv-words rename (`ip link set dev NAME name ens1f0`) names a
    device that does not exist: every DEL fails, the NIC stays down and unconfigured on the
    node with its record kept, and ADD refuses its PCI address. Safe: DEL renames it by what
    proves it (e.g. its ifindex, `ip link set dev` by index or the raw bytes) and restores it."""
    monkeypatch.setattr(node, "ip_json", _bytes_ip_json)
    nic = node.nics[0]
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    _ip_bytes(ns(pod), b"link", b"set", b"dev", b"net1", b"name", b"\xff\xfe")
    _ip_bytes(ns(pod), b"link", b"set", b"dev", b"\xff\xfe", b"netns", node.node.encode())
    node.remove_pod(ns(pod))
    call = node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1")
    assert call.rc == 0, call.stdout
    assert restored(node, nic) and records(node) == []
