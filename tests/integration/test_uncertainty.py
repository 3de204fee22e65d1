"""Nothing is forgotten on uncertainty: a pod that cannot be looked into fails DEL and keeps the
record; a NIC gone from a live pod is kept as an orphan.
Real ip, host-device, namespaces."""

import json
import os
import shutil

from tests.support.checks import NODE_TOOLS, ns, ok, records, restored, script
from tests.support.simnode import sh

REAL_IP = shutil.which("ip")



def test_when_the_pod_cannot_be_looked_into_del_fails_and_keeps_the_record(node, pod, tmp_path):
    nic = node.nics[0]
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    d = tmp_path / "bin"
    d.mkdir()
    script(d, "ip", f'case "$*" in *"-n {ns(pod)}"*) echo "RTNETLINK answers: Operation not '
                    f'permitted" >&2; exit 2;; esac\nexec {REAL_IP} "$@"\n')
    call = node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1",
                    extra_env={"PATH": f"{d}:{os.environ['PATH']}", **NODE_TOOLS})
    assert call.rc != 0 and call.json["code"] == 101
    assert records(node) == ["c1@net1.json"]
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))  # the runtime's retry
    assert restored(node, nic) and records(node) == []


def test_a_nic_gone_from_a_live_pod_is_kept_as_an_orphan_not_forgotten(node, pod):
    nic = node.nics[0]
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    sh("ip", "-n", ns(pod), "link", "del", "net1")  # a veth pair dies with either end
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))
    assert records(node) == ["c1@net1.json"]
    with open(os.path.join(node.state_dir, "attachments", "c1@net1.json")) as f:
        assert json.load(f)["orphanedSince"] > 0
