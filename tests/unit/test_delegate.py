"""Version negotiation with the delegate, and finding it."""

import contextlib
import os
import signal
import time

import pytest

from plugin import delegate
from plugin.errors import CniError

DEBIAN = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0")


@pytest.mark.parametrize("wanted,sent", [("1.1.0", "1.0.0"), ("1.0.0", "1.0.0"),
                                         ("0.4.0", "0.4.0"), ("0.3.1", "0.3.1")])
def test_never_sends_a_version_the_delegate_lacks(wanted, sent):
    assert delegate.Delegate("/x", DEBIAN).pick_version(wanted) == sent


def test_newer_only_delegate_gets_its_oldest_common_version():
    assert delegate.Delegate("/x", ("1.0.0", "1.1.0")).pick_version("0.3.1") == "1.0.0"


def test_no_common_version_is_not_available():
    with pytest.raises(CniError) as e:
        delegate.Delegate("/x", ("0.1.0",)).pick_version("1.0.0")
    assert e.value.code == 50


def test_cni_path_first(tmp_path, monkeypatch):
    monkeypatch.setattr(delegate, "FALLBACK_DIRS", ())
    plugin = tmp_path / "host-device"
    plugin.write_text("#!/bin/sh\n")
    os.chmod(plugin, 0o755)
    assert delegate.find([str(tmp_path / "nope"), str(tmp_path)]) == str(plugin)
    with pytest.raises(CniError) as e:
        delegate.find([str(tmp_path / "nope")])
    assert e.value.code == 50


def _dead(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in "ZX"
    except FileNotFoundError:
        return True


def test_a_delegate_that_hangs_is_killed_with_everything_it_started(tmp_path, monkeypatch):
    """The delegate runs in its own process group; on timeout the whole group is killed, so
    an IPAM chain it started cannot outlive us (a plugin running itself is a fork bomb)."""
    pidfile = tmp_path / "child.pid"
    plugin = tmp_path / "host-device"
    plugin.write_text(f"#!/bin/sh\nsleep 600 &\necho $! > {pidfile}\nexec sleep 600\n")
    os.chmod(plugin, 0o755)
    monkeypatch.setattr(delegate, "TIMEOUT_SECONDS", 2.0)
    try:
        with pytest.raises(CniError) as e:
            delegate._exec(str(plugin), {"PATH": os.environ["PATH"]}, b"{}")
        assert e.value.code == 100 and "process group" in e.value.msg
        child = int(pidfile.read_text())
        # SIGKILL is delivered asynchronously: give the kernel a moment to end it.
        deadline = time.monotonic() + 5
        while not _dead(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _dead(child), "the delegate's child outlived the timeout"
    finally:
        if pidfile.exists() and pidfile.read_text().strip():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
