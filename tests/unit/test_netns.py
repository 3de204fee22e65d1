"""Which paths are network namespaces: a record's (or CNI_NETNS's) path is entered only when
it is one. Real files on this machine, no root needed; nothing is entered."""

import os

import pytest

from plugin import backend, netns
from plugin.node import Node

NODE = Node()   # this machine, as the plugin runs commands on it


def test_a_network_namespace_and_its_identity():
    st = os.stat("/proc/self/ns/net")
    assert netns.identity("/proc/self/ns/net") == f"{st.st_dev}:{st.st_ino}"
    assert netns.identity(f"/proc/{os.getpid()}/ns/net") == f"{st.st_dev}:{st.st_ino}"


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return str(path)


def test_what_is_no_network_namespace(tmp_path, fifo):
    """Each would hang nsenter (a FIFO), fail it for ever (another kind of namespace), or
    redirect it (a planted symlink); none blocks here."""
    regular = tmp_path / "file"
    regular.write_text("")
    link = tmp_path / "link"
    os.symlink("/proc/self/ns/net", link)
    for path in (fifo, "/proc/self/ns/mnt", "/proc/self/ns/uts", str(regular), str(link),
                 str(tmp_path), "/dev/null", str(tmp_path / "missing"), "relative/ns", ""):
        assert netns.identity(path) == "", path
        assert not netns.is_net(path)


def test_a_command_is_never_run_in_what_is_no_network_namespace(fifo):
    with pytest.raises(backend.NotANetns) as e:
        backend.run(NODE, ["ip", "link", "show"], netns=fifo)
    assert not e.value.transient() and fifo in str(e.value)
    with pytest.raises(backend.NotANetns):
        backend.ip_batch(NODE, ["link set dev x up"], netns="/proc/self/ns/mnt")


def test_a_command_that_does_not_answer_is_killed_and_not_retried(monkeypatch):
    monkeypatch.setattr(backend, "COMMAND_TIMEOUT_SECONDS", 0.5)
    calls = []
    real = backend._run_once

    def counted(node, argv, stdin):
        calls.append(argv)
        return real(node, argv, stdin)
    monkeypatch.setattr(backend, "_run_once", counted)
    with pytest.raises(backend.TimedOut) as e:
        backend.run(NODE, ["sleep", "120"])
    assert not e.value.transient(True) and len(calls) == 1
