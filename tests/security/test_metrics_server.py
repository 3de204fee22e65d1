"""The daemon's metrics endpoint (node policy metricsPort) cannot be used by pods on the node
network to exhaust the daemon: it binds node policy's metricsAddress (127.0.0.1 unless the
admin says otherwise), holds a bounded number of connections, drops idle ones, and no forked
request child keeps its sockets. The daemon runs in the simulated node's netns
(tests/support/simnode.py); peers are processes in that netns, ended by PID.
"""

import os
import socket
import subprocess
import sys
import time

import pytest

from plugin import metrics
from tests.support.checks import wait_for_int

# Opens N connections to host:port, sending FIRST (argv[5]; "" for none) on each; writes how
# many connected to argv[4]. The scripts below go on from there.
_CONNECT = """
import socket, sys, time, os
host, port, n, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
first = sys.argv[5].encode() if len(sys.argv) > 5 else b""
held = []
for _ in range(n):
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.settimeout(5)
    try:
        s.connect((host, port))
        if first:
            s.sendall(first)
        held.append(s)
    except OSError:
        pass
with open(out + ".tmp", "w") as f:
    f.write(str(len(held)))
os.rename(out + ".tmp", out)
"""

# Holds N idle connections until killed.
_HOLD = _CONNECT + """
time.sleep(3600)
"""

# Connects, sends nothing, and prints how many seconds until the server closed it.
_IDLE = """
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=60)
t = time.monotonic()
print(s.recv(1) == b"" and time.monotonic() - t)
"""


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _in_node(node, *argv, **kw):
    return subprocess.run(["ip", "netns", "exec", node.node, sys.executable, "-I", "-c", *argv],
                          capture_output=True, text=True, timeout=120, **kw)


def _connects(node, host, port):
    code = ("import socket,sys\ntry:\n socket.create_connection((sys.argv[1], int(sys.argv[2]))"
            ", timeout=5).close(); print('yes')\nexcept OSError: print('no')")
    return _in_node(node, code, host, str(port)).stdout.strip() == "yes"


def _threads(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def _listener_inode(node, port):
    """The socket inode of the node netns's TCP listener on `port`."""
    out = subprocess.run(["ip", "netns", "exec", node.node, "cat", "/proc/net/tcp",
                          "/proc/net/tcp6"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines()[1:]:
        f = line.split()
        if len(f) > 9 and f[1].endswith(f":{port:04X}") and f[3] == "0A":
            return f[9]
    return None


def _children(pid):
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(int(d))
            except OSError:
                pass
    return kids


def _socket_inodes(pid):
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(target[8:-1])
    return found


def test_metrics_bind_loopback_unless_node_policy_says_otherwise(node):
    """Attack: any pod on the node network (the daemon runs with hostNetwork) reached the
    metrics port: it bound 0.0.0.0. Safe: 127.0.0.1 unless node policy's metricsAddress
    names another address."""
    port = _free_port()
    node.write_policy(metricsPort=port)
    node.start_daemon()
    nic_ip = node.nics[0].v4.split("/")[0]
    assert _connects(node, "127.0.0.1", port)
    assert not _connects(node, nic_ip, port)
    node.stop_daemon()
    node.write_policy(metricsPort=port, metricsAddress=nic_ip)
    node.start_daemon()
    assert _connects(node, nic_ip, port) and not _connects(node, "127.0.0.1", port)


def test_idle_connections_cannot_grow_the_daemon(node):
    """Attack: open hundreds of idle connections to the metrics port. One thread each, no
    limit, no idle timeout: 300 connections made 302 threads in the daemon's parent, and
    enough of them OOM-kill the container with every request in flight. Safe: the daemon's
    threads stay bounded, and an idle connection is closed."""
    port = _free_port()
    node.write_policy(metricsPort=port)
    pid = node.start_daemon()
    before = _threads(pid)
    out = f"{node.tmp}/held"
    holder = subprocess.Popen(["ip", "netns", "exec", node.node, sys.executable, "-I", "-c",
                               _HOLD, "127.0.0.1", str(port), "200", out],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_int(out)
        time.sleep(0.5)   # the server has accepted what it will
        assert _threads(pid) <= before + metrics.MAX_CONNECTIONS
    finally:
        holder.kill()
        holder.wait()
    idle = _in_node(node, _IDLE, "127.0.0.1", str(port)).stdout.strip()
    assert idle not in ("", "False"), "the server never closed an idle connection"
    assert node.daemon_ready()


def test_forked_children_do_not_hold_the_metrics_socket(node, pod):
    """Attack: the daemon's forked request children (and the idle spare) inherited the
    listening socket, so the port stayed bound (and accepting into a backlog nobody reads)
    by processes that never serve it. Safe: children close it."""
    port = _free_port()
    node.write_policy(metricsPort=port)
    pid = node.start_daemon()
    inode = _listener_inode(node, port)
    assert inode and inode in _socket_inodes(pid)
    deadline = time.monotonic() + 30
    while not _children(pid):   # the spare is forked once the daemon is idle
        assert time.monotonic() < deadline, "no spare child"
        time.sleep(0.05)
    for child in _children(pid):
        assert inode not in _socket_inodes(child), f"child {child} holds the metrics socket"


@pytest.mark.parametrize("bad", ["localhost", "10.0.0.1/8", "fe80::1%eth0", "", 5])
def test_metrics_address_must_be_an_ip(node, bad):
    from plugin import policy
    from plugin.errors import CniError

    with pytest.raises(CniError):
        policy.parse({"metricsAddress": bad}, "test")


# Then sends one byte on each every 2 s (never idle for metrics.IDLE_SECONDS); stops when the
# server has closed them all, or after 90 s.
_TRICKLE = _CONNECT + """
deadline = time.monotonic() + 90
while held and time.monotonic() < deadline:
    time.sleep(2)
    for s in list(held):
        try:
            s.sendall(b"E")
        except OSError:
            held.remove(s)
"""

# One scrape: prints "ok" when the server answered 200.
_SCRAPE = """
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
    s.sendall(b"GET /metrics HTTP/1.0\\r\\n\\r\\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    print("ok" if data.startswith(b"HTTP/1.0 200") else "no")
except OSError:
    print("no")
"""


def test_trickling_connections_cannot_hold_the_metrics_port(node):
    """Attack: fill every metrics slot with connections that send one byte of the request
    line every 2 s. Never idle for metrics.IDLE_SECONDS, so never dropped: the request line may
    be 64 KiB long, so one trickle holds a slot for a day and Prometheus gets nothing.
    Safe: a request must arrive whole within metrics.REQUEST_SECONDS, then the slot is free."""
    port = _free_port()
    node.write_policy(metricsPort=port)
    node.start_daemon()
    out = f"{node.tmp}/trickling"
    trickler = subprocess.Popen(["ip", "netns", "exec", node.node, sys.executable, "-I", "-c",
                                 _TRICKLE, "127.0.0.1", str(port),
                                 str(metrics.MAX_CONNECTIONS), out, "G"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for_int(out) == metrics.MAX_CONNECTIONS
        deadline = time.monotonic() + 45
        while _in_node(node, _SCRAPE, "127.0.0.1", str(port)).stdout.strip() != "ok":
            assert time.monotonic() < deadline, "trickling peers hold every metrics slot"
            time.sleep(1)
    finally:
        trickler.kill()
        trickler.wait()


@pytest.mark.parametrize("plant", ["newer-store", "symlinked-attachments"])
def test_a_state_dir_the_plugin_cannot_read_does_not_break_scrapes(node, plant):
    """Attack (a hostile or newer disk): the state dir was laid out by a newer release
    (format.json formatVersion 2), or its attachments/ is a symlink. Reading it raised a
    CniError out of the metrics collector: every scrape got no answer and wrote a Python
    traceback into the daemon's log. Safe: the scrape answers (without the state gauges) and
    the log has no traceback."""
    port = _free_port()
    node.write_policy(metricsPort=port)
    os.makedirs(os.path.join(node.state_dir, "attachments"), exist_ok=True)
    if plant == "newer-store":
        with open(os.path.join(node.state_dir, "format.json"), "w") as f:
            f.write('{"formatVersion": 2, "writtenBy": "9.0.0"}\n')
    else:
        os.rmdir(os.path.join(node.state_dir, "attachments"))
        os.makedirs(os.path.join(node.tmp, "elsewhere"))
        os.symlink(os.path.join(node.tmp, "elsewhere"), os.path.join(node.state_dir,
                                                                     "attachments"))
    node.start_daemon()
    assert _in_node(node, _SCRAPE, "127.0.0.1", str(port)).stdout.strip() == "ok"
    assert "Traceback" not in node.daemon_log()
