"""A transient `ip` failure is retried; a permanent one fails at once with the node unchanged.
Real ip, host-device, namespaces."""

import os
import shutil

from tests.support.checks import NODE_TOOLS, ok, restored, script

REAL_IP = shutil.which("ip")



def test_a_transient_ip_failure_is_retried(node, pod, tmp_path):
    nic = node.nics[0]
    d = tmp_path / "bin"
    d.mkdir()
    count = tmp_path / "count"
    script(d, "ip", f'if [ ! -e {count} ]; then touch {count}; '
                    'echo "RTNETLINK answers: Device or resource busy" >&2; exit 2; fi\n'
                    f'exec {REAL_IP} "$@"\n')
    call = node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1",
                    extra_env={"PATH": f"{d}:{os.environ['PATH']}", **NODE_TOOLS})
    ok(call)
    assert "retrying" in call.stderr
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))
    assert restored(node, nic)


def test_a_permanent_ip_failure_fails_at_once(node, pod, tmp_path, untouched):
    d = tmp_path / "bin"
    d.mkdir()
    calls = tmp_path / "calls"
    script(d, "ip", f'echo "$*" >> {calls}; echo "RTNETLINK answers: Operation not permitted" >&2\n'
                    'exit 2\n')
    call = node.cni("ADD", node.conf(node.nics[0].pci), "c1", pod, "net1",
                    extra_env={"PATH": f"{d}:{os.environ['PATH']}", **NODE_TOOLS})
    assert call.rc != 0 and call.json["code"] == 101
    assert "Operation not permitted" in call.json["details"]
    argvs = calls.read_text().splitlines()  # ADD's reads run at once: one each, none again
    assert argvs and len(argvs) == len(set(argvs)), argvs
    untouched()
