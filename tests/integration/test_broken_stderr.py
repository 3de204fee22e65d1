"""A runtime (or the Multus daemon) that dies mid-ADD closes the plugin's stderr. Logging is
best-effort: ADD either completes with a result or rolls back with an error object, never
stops between moving the NIC and answering (NIC in the pod, record `attached`, no answer)."""

import json
import os
import shutil
import subprocess

from tests.support.simnode import CNI_DIRS


def _records(node):
    d = os.path.join(node.state_dir, "attachments")
    return sorted(n for n in os.listdir(d) if n.endswith(".json")) if os.path.isdir(d) else []


def _gated_host_device(tmp_path, gate):
    """host-device that moves the NIC only once `gate` exists: the test closes the plugin's
    stderr first, so every line the plugin logs after the move meets a closed pipe. If the gate
    never opens (no line came before the move), it moves anyway and leaves `gate.late`."""
    cni = tmp_path / "cni"
    cni.mkdir()
    hd = cni / "host-device"
    hd.write_text('#!/bin/sh\nif [ "$CNI_COMMAND" = ADD ]; then\n'
                  f'  n=0; while [ ! -e {gate} ] && [ $n -lt 600 ]; do sleep 0.05; n=$((n+1)); done\n'
                  f'  [ -e {gate} ] || touch {gate}.late\n'
                  'fi\nexec /usr/lib/cni/host-device\n')
    hd.chmod(0o755)
    shutil.copy("/usr/lib/cni/static", cni / "static")
    return str(cni)


def test_add_with_a_stderr_closed_after_the_first_line_leaves_no_half_state(node, pod, tmp_path):
    nic = node.nics[0]
    gate = tmp_path / "gate"
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "CNI_COMMAND": "ADD",
           "CNI_PATH": _gated_host_device(tmp_path, gate), "CNI_CONTAINERID": "c1",
           "CNI_NETNS": pod, "CNI_IFNAME": "net1", "AMD_HOST_DEVICE_SYSFS": node.sysfs,
           "AMD_HOST_DEVICE_STATE_DIR": node.state_dir, "AMD_HOST_DEVICE_FALLBACK_DIRS": ""}
    node.sync_sysfs()
    proc = subprocess.Popen(["ip", "netns", "exec", node.node, "env", "-i",
                             *(f"{k}={v}" for k, v in env.items()), node.plugin],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.stdin.write(json.dumps(node.conf(nic.pci)).encode())
        proc.stdin.close()
        first = proc.stderr.readline()
        proc.stderr.close()          # the reader died
        gate.touch()
        out = proc.stdout.read().decode()
        rc = proc.wait(timeout=120)
    finally:
        gate.touch()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert first and not os.path.exists(f"{gate}.late"), "no line came before the move"
    answer = json.loads(out) if out.strip() else None
    name = pod.rsplit("/", 1)[1]
    if rc == 0:  # completed: a result, the NIC in the pod, the record kept
        assert answer and answer["interfaces"][0]["name"] == "net1", out
        assert node.addresses(name, "net1") == {nic.v4, nic.v6}
        assert _records(node) == ["c1@net1.json"]
        done = node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1", cni_path=":".join(CNI_DIRS))
        assert done.rc == 0, done
    else:        # rolled back: an error object, the NIC home, no record
        assert answer and {"cniVersion", "code", "msg"} <= answer.keys(), f"rc={rc} stdout={out!r}"
        assert node.link(name, "net1") is None
        assert _records(node) == []
    assert node.addresses(node.node, nic.name) == {nic.v4, nic.v6}
    assert "UP" in node.link(node.node, nic.name)["flags"]
