"""A record's netns (or CNI_NETNS) that is no network namespace is never entered.

A FIFO (never opened, never hangs), another kind of namespace
(/proc/self/ns/mnt: setns fails, so DEL failed with code 101 for ever), a plain file, and a
symlink planted in place of the path (O_NOFOLLOW: only the kernel's /proc/<pid>/ns/net magic
link is followed). Each is "not the pod": DEL and GC succeed, the NIC in the live pod is left
alone, and the runtime's real DEL still gives it back. Real ip, host-device, namespaces."""

import contextlib
import os
import threading

import pytest

from tests.support.checks import edit_record, gc_call, ns, ok, records, restored


def _hostile(tmp_path, node, pod, kind):
    if kind == "mnt namespace":
        return "/proc/self/ns/mnt"
    if kind == "regular file":
        path = tmp_path / "file"
        path.write_text("")
        return str(path)
    path = tmp_path / "link"  # a symlink to the pod's own netns is still refused
    os.symlink(pod, path)
    return str(path)


@pytest.mark.parametrize("kind", ["mnt namespace", "regular file", "symlink"])
@pytest.mark.parametrize("command", ["DEL", "GC"])
def test_a_recorded_netns_that_is_no_network_namespace_is_never_entered(
        node, pod, tmp_path, kind, command):
    nic = node.nics[0]
    conf = node.conf(nic.pci, "1.1.0")
    ok(node.cni("ADD", conf, "c1", pod, "net1"))
    path = _hostile(tmp_path, node, pod, kind)

    def change(obj):
        obj["netns"], obj["netnsID"] = path, ""
    edit_record(node, "c1@net1.json", change)
    if command == "DEL":
        ok(node.cni("DEL", conf, "c1", "", "net1"))
    else:
        ok(gc_call(node, []))
    assert node.link(ns(pod), "net1") is not None  # never touched on the strength of it
    assert records(node) == ["c1@net1.json"]       # kept: the NIC was not given back
    ok(node.cni("DEL", conf, "c1", pod, "net1"))
    assert restored(node, nic) and records(node) == []


def test_a_cni_netns_that_is_no_network_namespace_is_not_the_pod(node, pod, tmp_path):
    """The runtime is trusted, but a CNI_NETNS that is a FIFO must still not hang DEL, even for
    a record without a netnsID to compare it with (older records): it is not looked into (nor
    handed to nsenter), and the record is kept for the real DEL."""
    nic = node.nics[0]
    conf = node.conf(nic.pci)
    ok(node.cni("ADD", conf, "c1", pod, "net1"))
    edit_record(node, "c1@net1.json", lambda obj: obj.update(netnsID=""))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    try:
        ok(node.cni("DEL", conf, "c1", str(fifo), "net1", timeout=60))
    finally:  # on failure, release whatever still waits in open() on the FIFO
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert node.link(ns(pod), "net1") is not None and records(node) == ["c1@net1.json"]
    ok(node.cni("DEL", conf, "c1", pod, "net1"))
    assert restored(node, nic) and records(node) == []


def _unblocking(fifo, call):
    """Run `call` in a thread; if it has not returned in 20 s it is hung in open() of the
    FIFO (nsenter/ip): open the FIFO for writing until it returns, so nothing is left behind.
    Returns (hung, result)."""
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", call()), daemon=True)
    t.start()
    t.join(20)
    hung = t.is_alive()
    while t.is_alive():
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        t.join(0.1)
    return hung, out.get("r")


@pytest.mark.parametrize("command", ["DEL", "GC"])
def test_a_record_whose_netns_is_a_fifo_never_hangs(node, pod, tmp_path, command):
    """A record's `netns` is checked only as an absolute path: a FIFO there (any FIFO on the
    node, e.g. /run/initctl) made nsenter block in open() for ever, in DEL (when the runtime
    sends no CNI_NETNS) and in GC, which then stopped every other attachment's GC too."""
    nic = node.nics[0]
    ok(node.cni("ADD", node.conf(nic.pci, "1.1.0"), "c1", pod, "net1"))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def change(obj):
        obj["netns"], obj["netnsID"] = str(fifo), ""
    edit_record(node, "c1@net1.json", change)
    if command == "DEL":
        hung, call = _unblocking(fifo, lambda: node.cni("DEL", node.conf(nic.pci, "1.1.0"),
                                                        "c1", "", "net1", timeout=300))
    else:
        hung, call = _unblocking(fifo, lambda: gc_call(node, [], extra_env=None))
    assert not hung, f"{command} hung on a FIFO named as the pod's netns"
    assert call is not None and (call.rc == 0 or "code" in call.json), call
    assert node.link(ns(pod), "net1") is not None  # never touched on the strength of it
    # The runtime's real DEL still gives the NIC back.
    ok(node.cni("DEL", node.conf(nic.pci, "1.1.0"), "c1", pod, "net1"))
    assert restored(node, nic)
