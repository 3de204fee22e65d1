"""Third red team: attacks on the one-shell command runner (plugin/shell.py), ADD's single
`ip -d -N -batch` read with the uplink guard on numeric output, and DEL's fast path and
ethtool diff (plugin/giveback.py). Each test FAILS on the code it was written against and
passes once the attack is refused, unless its docstring says it is a passing regression test.
Real ip, the real host-device, veth NICs in namespaces (tests/support/simnode.py); the node is
cleaned by the fixtures; anything that could hang is bounded by a timeout.
"""

import contextlib
import os
import signal

from plugin import shell
from tests.support.checks import REAL_IP, records, restored, script


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


def test_a_command_interrupted_by_a_signal_does_not_answer_the_next_one():
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
