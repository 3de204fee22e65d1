"""A real CNI runtime as an independent client: podman (CNI backend, i.e. libcni) runs a
conflist of our plugin (fixed deviceID) plus sbr for a container started in the simulated
node's netns; the container sees the NIC with its addresses and reaches the peer; removing
the container gives the NIC back to the node."""

import json
import os
import subprocess
import uuid

import pytest

from tests.support.simnode import SimNode

PROBE = os.environ.get("PROBE_IMAGE", "localhost/amd-host-device-probe:bookworm")


@pytest.fixture
def world(tmp_path):
    node = SimNode()
    try:
        nic = node.add_nic(1)
        (tmp_path / "net.d").mkdir()
        (tmp_path / "bin").mkdir()
        # podman's cleanup process runs DEL without our environment: the node's settings come
        # with the binary, as an admin's wrapper (or node policy file) would bring them.
        entry = tmp_path / "bin" / "amd-host-device"
        entry.write_text(f"#!/bin/sh\nexport AMD_HOST_DEVICE_SYSFS={node.sysfs} "
                         f"AMD_HOST_DEVICE_STATE_DIR={node.state_dir} "
                         f"AMD_HOST_DEVICE_NODE_CONFIG={node.policy_path}\n"
                         f"exec {node.plugin} \"$@\"\n")
        entry.chmod(0o755)
        conflist = {"cniVersion": "1.0.0", "name": "amd-e2e", "plugins": [
            {"type": "amd-host-device", "deviceID": nic.pci, "stateDir": node.state_dir},
            {"type": "sbr"}]}
        (tmp_path / "net.d" / "amd-e2e.conflist").write_text(json.dumps(conflist))
        (tmp_path / "containers.conf").write_text(f"""
[engine]
runtime = "runc"
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[network]
network_backend = "cni"
network_config_dir = "{tmp_path}/net.d"
cni_plugin_dirs = ["{tmp_path}/bin", "/usr/lib/cni"]
""")
        yield node, nic, tmp_path
    finally:
        node.close()


def podman(node, tmp_path, *args, check=True):
    """podman as the node's runtime: inside the node's netns (nsenter, not `ip netns exec`,
    which remounts /sys and hides the cgroups runc needs), with our CNI settings."""
    env = {**os.environ, "CONTAINERS_CONF": str(tmp_path / "containers.conf"),
           "AMD_HOST_DEVICE_SYSFS": node.sysfs, "AMD_HOST_DEVICE_STATE_DIR": node.state_dir,
           "AMD_HOST_DEVICE_NODE_CONFIG": node.policy_path}
    return subprocess.run(["nsenter", f"--net={node.netns_path(node.node)}", "podman", *args],
                          env=env,
                          capture_output=True, text=True, check=check, timeout=300)


def test_podman_runs_our_conflist_through_libcni(world):
    node, nic, tmp = world
    name = f"ahd-rt-{uuid.uuid4().hex[:8]}"
    try:
        run = podman(node, tmp, "run", "-d", "--name", name, "--network", "amd-e2e", PROBE,
                     "sleep", "300", check=False)
        assert run.returncode == 0, run.stderr
        assert node.link(node.node, nic.name) is None  # the NIC left the node
        addr = json.loads(podman(node, tmp, "exec", name, "ip", "-j", "addr", "show",
                                 "dev", "eth0").stdout)[0]
        have = {f"{a['local']}/{a['prefixlen']}" for a in addr["addr_info"]
                if a["scope"] != "link"}
        assert have == {nic.v4, nic.v6}
        assert addr["mtu"] == 9000
        # sbr moved eth0's routes into a table for its source address: ping from it
        ping = podman(node, tmp, "exec", name, "ping", "-c1", "-W2", "-I", nic.v4.split("/")[0],
                      nic.peer_v4, check=False)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        rules = podman(node, tmp, "exec", name, "ip", "rule").stdout
        assert f"from {nic.v4.split('/')[0]} lookup" in rules  # sbr ran after us
        records = os.listdir(os.path.join(node.state_dir, "attachments"))
        assert len(records) == 1 and records[0].endswith("@eth0.json")
    finally:
        gone = podman(node, tmp, "rm", "-f", "-t", "0", name, check=False)
    assert gone.returncode == 0, gone.stderr
    assert node.addresses(node.node, nic.name) == {nic.v4, nic.v6}
    assert "UP" in node.link(node.node, nic.name)["flags"]
    assert os.listdir(os.path.join(node.state_dir, "attachments")) == []
    assert podman(node, tmp, "ps", "-a", "--filter", f"name={name}", "-q").stdout.strip() == ""
