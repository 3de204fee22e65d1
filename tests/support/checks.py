"""Calls and assertions on a simulated node shared by the integration and security suites,
and an `ip` that logs what it is given."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import time

REAL_IP = shutil.which("ip") or "/usr/sbin/ip"
REAL_NSENTER = shutil.which("nsenter") or "/usr/bin/nsenter"


# A bundled plugin runs its own tools; this makes it use PATH's, so that a fault-injecting
# `ip` first in PATH is the one it runs (plugin/tools.py). A no-op from the venv.
NODE_TOOLS = {"AMD_HOST_DEVICE_TOOLS": "node"}


def ok(call):
    assert call.rc == 0, f"rc={call.rc} stdout={call.stdout} stderr={call.stderr}"
    return call.json


def attachments(node) -> pathlib.Path:
    return pathlib.Path(node.state_dir) / "attachments"


def records(node):
    d = attachments(node)
    return sorted(n for n in os.listdir(d) if n.endswith(".json")) if d.is_dir() else []


def restored(node, nic, up=True):
    link = node.link(node.node, nic.name)
    return (link is not None and ("UP" in link["flags"]) == up and link["mtu"] == nic.mtu
            and node.addresses(node.node, nic.name) == {nic.v4, nic.v6})


def ns(path):
    return path.rsplit("/", 1)[1]


def script(tmp_path, name, body):
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def gc_call(node, valid, key="cni.dev/valid-attachments", extra_env=None):
    conf = node.conf("", "1.1.0")
    conf[key] = valid
    return node.cni("GC", conf, extra_env=extra_env)


def edit_record(node, name: str, change) -> None:
    path = attachments(node) / name
    obj = json.loads(path.read_text())
    change(obj)
    path.write_text(json.dumps(obj))


def reconcile(node, *args, env=None):
    node.sync_sysfs()
    return subprocess.run(["ip", "netns", "exec", node.node, "env", *(env or []), node.plugin,
                           "reconcile", "--state-dir", node.state_dir, "--interval", "0", *args],
                          capture_output=True, text=True, timeout=60)


def logging_ip(bin_dir: pathlib.Path, log: pathlib.Path) -> dict[str, str]:
    """`ip` and `nsenter` first in PATH that log their argv (one `A` line each) and every
    batch line on stdin (`L` lines) to `log`, then run the real tool."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    ip = bin_dir / "ip"
    ip.write_text(f"""#!/bin/sh
printf 'A ip %s\\n' "$*" >> {log}
case " $* " in
  *" -batch "*)
    t=$(mktemp)
    cat > "$t"
    sed 's/^/L /' "$t" >> {log}
    {REAL_IP} "$@" < "$t"; rc=$?
    rm -f "$t"
    exit $rc;;
esac
exec {REAL_IP} "$@"
""")
    nsenter = bin_dir / "nsenter"
    nsenter.write_text(f"""#!/bin/sh
printf 'A nsenter %s\\n' "$*" >> {log}
exec {REAL_NSENTER} "$@"
""")
    ip.chmod(0o755)
    nsenter.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}",
            **NODE_TOOLS}


def details(node, netns, name):
    """`ip -d -j link show dev NAME` in netns, or None."""
    found = node.ip_json(netns, "-d", "link", "show", "dev", name)
    return found[0] if found else None


def wait_for_int(path, limit: float = 60.0) -> int:
    """The number a helper script writes to `path` (atomically), once it has."""
    deadline = time.monotonic() + limit
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)
    with open(path) as f:
        return int(f.read())


# A raw PING on the daemon's wire, as any local process could send it (argv[1]: the socket):
# prints the reply's bytes, or "reset" if the daemon closed the connection.
RAW_PING = """
import socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sys.argv[1])
try:  # a refused peer may find the connection closed while it still sends
    s.sendall(struct.pack(">I", 6) + b"PING 1" + struct.pack(">I", 0) + struct.pack(">I", 0))
    print(repr(s.recv(100)))
except (ConnectionResetError, BrokenPipeError):
    print("reset")
"""


def lenient_ip_json(netns, *args):
    """SimNode.ip_json for a netns whose link names `ip -j` prints raw (control characters,
    bytes that are not UTF-8): the harness must still see, and sync_sysfs mirror, them."""
    p = subprocess.run(["ip", "-n", netns, "-j", *args], capture_output=True, timeout=30)
    out = p.stdout.decode("utf-8", "surrogateescape")
    return json.loads(out, strict=False) if p.returncode == 0 and out.strip() else None
