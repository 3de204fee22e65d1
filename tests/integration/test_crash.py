"""The plugin killed at any point of ADD or DEL: the runtime's next DEL restores the node.
Real ip, host-device, namespaces."""

import os
import shutil

import pytest

from tests.support.checks import NODE_TOOLS, ns, ok, records, restored, script

REAL_IP = shutil.which("ip")



CRASHES = {
    "before-the-move": 'if [ "$CNI_COMMAND" = ADD ]; then kill -9 $PPID; sleep 1; fi\n'
                       'exec /usr/lib/cni/host-device\n',
    "during-the-move": 'if [ "$CNI_COMMAND" = ADD ]; then\n'
                       '  /usr/lib/cni/host-device > /dev/null & kill -9 $PPID; wait; exit 0\nfi\n'
                       'exec /usr/lib/cni/host-device\n',
    "right-after-the-move": 'if [ "$CNI_COMMAND" = ADD ]; then\n'
                            '  /usr/lib/cni/host-device > /dev/null; kill -9 $PPID; sleep 1; fi\n'
                            'exec /usr/lib/cni/host-device\n',
}


@pytest.mark.parametrize("point", list(CRASHES))
def test_sigkill_during_add_then_del_restores(node, pod, tmp_path, point):
    nic = node.nics[0]
    cni = tmp_path / "cni"
    cni.mkdir()
    script(cni, "host-device", CRASHES[point])
    shutil.copy("/usr/lib/cni/static", cni / "static")
    crashed = node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1", cni_path=str(cni),
                       extra_env={"AMD_HOST_DEVICE_FALLBACK_DIRS": ""})
    assert crashed.rc == -9, crashed
    assert records(node) == ["c1@net1.json"]  # the record was written before the move
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))
    assert restored(node, nic) and records(node) == []
    assert node.link(ns(pod), "net1") is None


def _ip_killer(tmp_path, pattern):
    """An `ip` first in PATH that SIGKILLs the plugin when its argv matches the shell case
    `pattern`."""
    d = tmp_path / "bin"
    d.mkdir(exist_ok=True)
    # ip runs under coreutils `timeout`, in the plugin's command shell (plugin/node.py): the
    # plugin is the first ancestor that is neither.
    script(d, "ip", f'case "$*" in {pattern})\n'
           '  p=$PPID; while case "$(cat /proc/$p/comm)" in timeout|sh|dash) true;; *) false;; esac\n'
           '  do p=$(cut -d" " -f4 /proc/$p/stat); done\n'
           f'  kill -9 $p; sleep 1;; esac\nexec {REAL_IP} "$@"\n')
    return {"PATH": f"{d}:{os.environ['PATH']}", **NODE_TOOLS}


def test_sigkill_while_capturing_leaves_the_node_untouched(node, pod, tmp_path, untouched):
    nic = node.nics[0]
    crashed = node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1",
                       extra_env=_ip_killer(tmp_path, '*"-j -d -N -batch"*'))
    assert crashed.rc == -9
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))
    untouched()


def test_sigkill_in_the_middle_of_del_then_del_again_restores(node, pod, tmp_path):
    nic = node.nics[0]
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    crashed = node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1",
                       extra_env=_ip_killer(tmp_path, '"-force -batch -"'))  # the restore
    assert crashed.rc == -9
    assert not restored(node, nic)  # host-device moved it home bare; we died before restoring
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))
    assert restored(node, nic) and records(node) == []


def test_sigterm_during_add_rolls_back(node, pod, tmp_path):
    nic = node.nics[0]
    cni = tmp_path / "cni"
    cni.mkdir()
    script(cni, "host-device", 'if [ "$CNI_COMMAND" = ADD ]; then\n'
           '  /usr/lib/cni/host-device > /dev/null; kill -TERM $PPID; sleep 5; fi\n'
           'exec /usr/lib/cni/host-device\n')
    shutil.copy("/usr/lib/cni/static", cni / "static")
    call = node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1", cni_path=str(cni),
                    extra_env={"AMD_HOST_DEVICE_FALLBACK_DIRS": ""})
    assert call.rc != 0
    assert restored(node, nic) and records(node) == []
