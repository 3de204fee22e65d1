"""The daemon (plugin/daemon.py) cannot be wedged by its clients, and leaves nothing behind:
slow peers, a burst of non-root clients, a SIGKILL of the daemon with an idle spare child.
Real ip, veth NICs in namespaces (tests/support/simnode.py); every process a test starts is
ended by PID; anything that could hang is bounded by a timeout (a hang guard, not a timing
assertion). The metrics endpoint is tests/security/test_metrics_server.py.
"""

import contextlib
import os
import signal
import subprocess
import time

from tests.support.checks import (
    RAW_PING,
    ok,
    restored,
)
from tests.support.processes import (
    children,
    end_processes,
    gone_within,
    steady_only_child,
)


def test_slow_peers_cannot_wedge_the_daemon(node):
    """CHILD_READ_SECONDS bounds each recv(), not the request: a peer that sends one byte of
    its frame every few seconds keeps its forked child forever. At max_children (64) such
    peers, the parent blocks in ForkingMixIn.collect_children (os.waitpid): it answers no
    ping (readiness fails), runs no reconcile, every shim waits ACCEPT_SECONDS before it
    falls back, and SIGTERM is not acted on. Bounded: 64 local connections, ~16 s."""
    import socket
    import threading
    import time

    from plugin import daemon_client

    node.start_daemon()
    peers = []
    stop = threading.Event()
    try:
        for _ in range(64):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect(node.socket)
            peers.append(s)
        frame = (4096).to_bytes(4, "big") + b"x" * 4096   # never completed

        def trickle():
            i = 0
            while not stop.is_set() and i < len(frame):
                for s in peers:
                    with contextlib.suppress(OSError):
                        s.send(frame[i:i + 1])
                i += 1
                stop.wait(2)

        t = threading.Thread(target=trickle, daemon=True)
        t.start()
        time.sleep(14)   # past CHILD_READ_SECONDS (10 s): a bounded child is gone by now
        answered = daemon_client.ping(node.socket, timeout=5)
        stop.set()
        t.join(10)
    finally:
        stop.set()
        for s in peers:
            s.close()
    assert answered, "the daemon is wedged by 64 slow peers"
    assert node.stop_daemon(timeout=60) == 0


def _one_child(pid, limit=20.0):
    return steady_only_child(pid, limit=limit)


def test_held_a_sigkilled_daemon_leaves_neither_its_idle_spare_nor_the_spares_shell(node):
    """Passing regression test. Attack: SIGKILL the daemon while its spare child (with its
    command shell started) waits for a connection. Safe, and so it is: the spare reads EOF
    on its socketpair and exits, and its shell reads EOF on stdin and exits: nothing of the
    daemon is left (checked by PID, bounded by a hang guard)."""
    pid = node.start_daemon("--grace", "2")
    spare = _one_child(pid)
    shell_pid = _one_child(spare)
    try:
        os.kill(pid, signal.SIGKILL)
        node.daemon.wait(timeout=30)
        assert gone_within(spare, 20), "the idle spare outlived its daemon"
        assert gone_within(shell_pid, 20), "the spare's shell outlived its daemon"
    finally:
        end_processes(spare, shell_pid)


def test_held_a_non_root_burst_neither_takes_the_spare_nor_wedges_the_daemon(node, pod):
    """Passing regression test. Attack: with the socket's file modes opened up (so only the
    daemon's SO_PEERCRED check stands in the way), a local non-root user opens a burst of
    connections. Safe, and so it is: each is refused in the parent before the spare is
    handed anything; the same spare then serves the next root request through the daemon."""
    pid = node.start_daemon("--grace", "2")
    spare = _one_child(pid)
    os.chmod(node.tmp, 0o711)
    os.chmod(os.path.dirname(node.socket), 0o755)
    os.chmod(node.socket, 0o666)
    burst = [subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                               "/usr/bin/python3", "-I", "-c", RAW_PING, node.socket],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for _ in range(20)]
    for p in burst:
        out, _ = p.communicate(timeout=60)
        assert "PONG" not in out
    # Bounded settle: on a loaded machine the parent may still be closing refused connections.
    deadline = time.monotonic() + 10
    while (kids := children(pid)) != [spare] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert kids == [spare], f"a non-root peer consumed or replaced the spare: {kids} != {[spare]}"
    nic = node.nics[0]
    call = node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1")
    ok(call)
    assert "attached" not in call.stderr   # through the daemon
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))
    assert restored(node, nic)
    assert node.stop_daemon() == 0
