"""Node files the plugin reads but does not own (the node policy, the CNI config dir) that are
FIFOs: a CNI error or a doctor finding, never a hang. Bounded by a timeout (a hang guard).
"""

import subprocess

from tests.support.checks import records, restored


def _bounded(run):
    """The call's result, or None if it hung (killed at the bound)."""
    try:
        return run()
    except subprocess.TimeoutExpired:
        return None


def test_doctor_does_not_hang_on_a_fifo_in_the_cni_config_dir(node, tmp_path):
    """doctor reads every *.conf/*.conflist of /etc/cni/net.d with a plain open(): a FIFO
    there (any tool on the node may write that dir) blocks it for ever, and doctor is the
    DaemonSet's readiness check. A symlink to /dev/zero is handled; a FIFO is not."""
    import os
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    os.mkfifo(conf_dir / "00-x.conflist")
    call = _bounded(lambda: node.run("doctor", "--json", timeout=30,
                                     extra_env={"AMD_HOST_DEVICE_CNI_CONF_DIR": str(conf_dir)}))
    assert call is not None, "doctor hung on a FIFO in the CNI config dir"
    assert "Traceback" not in call.stderr


def test_a_fifo_at_the_node_policy_path_is_a_cni_error_not_a_hang(node, pod):
    """policy.load() opens the node policy file with a blocking open(): a FIFO at the path
    hangs every ADD/DEL/GC and `list` until the runtime kills them; the CNI contract (and
    the state files' own rule: O_NONBLOCK, regular files only) wants a CNI error object."""
    import os
    os.unlink(node.policy_path)   # the {} the simulated node has, as the installer writes
    os.mkfifo(node.policy_path)
    nic = node.nics[0]
    call = _bounded(lambda: node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1", timeout=30))
    assert call is not None, "ADD hung on a FIFO at the node policy path"
    assert call.rc != 0 and call.json and {"code", "msg"} <= set(call.json)
    listing = _bounded(lambda: node.run("list", timeout=30))
    assert listing is not None, "list hung on a FIFO at the node policy path"
    assert records(node) == [] and restored(node, nic)
