"""CNI 1.1 GC restores and forgets what is not valid; STATUS says whether ADD can be served.
Real ip, host-device, namespaces."""

import os
import shutil

import pytest

from tests.support.checks import NODE_TOOLS, gc_call, ns, ok, records, restored


@pytest.mark.parametrize("key", ["cni.dev/valid-attachments", "cni.dev/attachments"])
def test_gc_restores_and_forgets_what_is_not_valid(node, key):
    a, b = node.nics
    p1, p2 = (node.netns_path(node.add_pod()) for _ in range(2))
    ok(node.cni("ADD", node.conf(a.pci, "1.1.0"), "keep", p1, "net1"))
    ok(node.cni("ADD", node.conf(b.pci, "1.1.0"), "drop", p2, "net1"))
    ok(gc_call(node, [{"containerID": "keep", "ifname": "net1"}], key))
    assert records(node) == ["keep@net1.json"]
    assert restored(node, b)
    assert node.addresses(ns(p1), "net1") == {a.v4, a.v6}
    ok(gc_call(node, []))
    assert records(node) == [] and restored(node, a)


def test_gc_needs_valid_attachments(node):
    call = node.cni("GC", node.conf("", "1.1.0"))
    assert call.json["code"] == 7


def test_status(node, tmp_path, cni_path_without_host_device):
    ok(node.cni("STATUS", node.conf("", "1.1.0")))
    gone = node.cni("STATUS", node.conf("", "1.1.0"), cni_path=cni_path_without_host_device,
                    extra_env={"AMD_HOST_DEVICE_FALLBACK_DIRS": ""})
    assert gone.json["code"] == 50 and "host-device" in gone.json["msg"]
    (tmp_path / "file").write_text("")
    ro = node.cni("STATUS", node.conf("", "1.1.0"),
                  extra_env={"AMD_HOST_DEVICE_STATE_DIR": str(tmp_path / "file" / "state")})
    assert ro.json["code"] == 50 and "state dir" in ro.json["msg"]
    noip = tmp_path / "noip"
    noip.mkdir()
    for tool in ("nsenter", "env", "timeout"):
        os.symlink(shutil.which(tool), noip / tool)
    missing = node.cni("STATUS", node.conf("", "1.1.0"), extra_env={"PATH": str(noip), **NODE_TOOLS})
    assert missing.json["code"] == 50 and "ip" in missing.json["msg"]
