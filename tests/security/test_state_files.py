"""State files and AMD's legacy mappings are read as if hostile: a legacy mapping never
configures a link that is not its NIC, a device index pointing at another device's record
does not block the NIC, and `list` on a legacy mappings file that is a symlink or a FIFO, or on
a record orphaned past year 9999, reports instead of a traceback. Real ip, the real
host-device, veth NICs in namespaces (tests/support/simnode.py). The property test over
every record field is tests/security/test_hostile_state.py.
"""

import json
import os

import pytest

from tests.support.checks import (
    edit_record,
    gc_call,
    ns,
    ok,
    reconcile,
    records,
    restored,
)
from tests.support.simnode import sh


@pytest.mark.parametrize("sweep", ["gc", "reconcile"])
def test_a_legacy_mapping_never_configures_a_link_that_is_not_its_nic(node, sweep):
    """AMD's mapping names its NIC only by hostInterfaceName; a link of that name with no PCI
    parent (lo, a bridge, a bond, a tunnel) was taken as the NIC on the node: GC and
    reconcile gave `lo` the node's gateway address, so the node lost its gateway."""
    a, b = node.nics
    os.makedirs(node.state_dir, mode=0o700)
    with open(os.path.join(node.state_dir, "ip-interface-mappings.json"), "w") as f:
        json.dump({b.pci: {"hostInterfaceName": "lo", "state": "UP",
                           "hostInterfaceIPs": [f"{a.peer_v4}/32", "10.77.0.1/32"]}}, f)
    before = node.addresses(node.node, "lo")
    if sweep == "gc":
        ok(gc_call(node, []))
    else:
        reconcile(node)
    assert node.addresses(node.node, "lo") == before, "a mapping configured lo"
    route = sh("ip", "-n", node.node, "route", "get", a.peer_v4).stdout
    assert not route.startswith("local"), route


def test_a_device_index_pointing_at_another_devices_record_does_not_block_the_nic(node):
    """devices/<A> -> the record of an attachment holding B: every ADD of A failed with code
    103 naming B's attachment, for ever (the index is never set aside or corrected)."""
    a, b = node.nics
    p1, p2 = (node.netns_path(node.add_pod()) for _ in range(2))
    ok(node.cni("ADD", node.conf(b.pci), "c2", p2, "net1"))
    os.symlink("../attachments/c2@net1.json", os.path.join(node.state_dir, "devices", a.pci))
    ok(node.cni("ADD", node.conf(a.pci), "c1", p1, "net1"))
    assert node.addresses(ns(p2), "net1") == {b.v4, b.v6}  # B's attachment untouched
    ok(node.cni("DEL", node.conf(a.pci), "c1", p1, "net1"))
    ok(node.cni("DEL", node.conf(b.pci), "c2", p2, "net1"))
    assert restored(node, a) and restored(node, b) and records(node) == []


def _legacy_path(node):
    import os
    return os.path.join(node.state_dir, "ip-interface-mappings.json")


def _ensure_state_dir(node):
    import os
    for sub in ("", "attachments", "devices", "locks"):
        os.makedirs(os.path.join(node.state_dir, sub), mode=0o700, exist_ok=True)


def test_list_on_a_legacy_mappings_file_that_is_a_symlink_is_no_traceback(node, tmp_path):
    """`legacy._parse` raises state.NotRegular (not an OSError/ValueError) for a symlink,
    FIFO or oversized `ip-interface-mappings.json`; listing._legacy catches only
    OSError/ValueError, so `amd-host-device list` dies with a Python traceback. An admin who
    symlinked AMD's file into the state dir gets no listing at all."""
    import os
    _ensure_state_dir(node)
    target = tmp_path / "mappings.json"
    target.write_text("{}")
    os.symlink(target, _legacy_path(node))
    for args in (("list",), ("list", "--json")):
        call = node.run(*args, timeout=60)
        assert "Traceback" not in call.stderr, call.stderr[-1500:]
        assert call.rc in (0, 1), (call.rc, call.stderr[-500:])
    assert os.path.islink(_legacy_path(node)) and target.read_text() == "{}"


def test_list_on_a_legacy_mappings_file_that_is_a_fifo_is_no_traceback(node):
    """The same through a FIFO (which must neither hang `list` nor be moved by it)."""
    import os
    import stat
    _ensure_state_dir(node)
    os.mkfifo(_legacy_path(node))
    call = node.run("list", "--json", timeout=60)
    assert "Traceback" not in call.stderr, call.stderr[-1500:]
    assert call.rc in (0, 1), (call.rc, call.stderr[-500:])
    assert stat.S_ISFIFO(os.lstat(_legacy_path(node)).st_mode)


def test_list_on_a_record_orphaned_past_year_9999_reports_instead_of_a_traceback(node, pod):
    """Attack (a corrupt disk or a hostile write to the state dir): `orphanedSince` (and
    `created`) of 3e11, which values.number accepts (< 1e12), is year 11476. `list --json`
    prints it, but the table's _orphan_cell parses it back with strptime("%Y"), which takes
    four digits: `list` dies with a ValueError traceback and shows the operator no
    attachment at all, the healthy ones included.
    Safe: `list` prints the table (the record as it reads, or listed as corrupt), exit 0,
    no traceback."""
    nic = node.nics[0]
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    (name,) = records(node)
    edit_record(node, name, lambda o: o.update(orphanedSince=3e11, created=3e11))
    listed = node.run("list")
    assert "Traceback" not in listed.stderr, listed.stderr[-800:]
    assert listed.rc == 0 and "c1" in listed.stdout
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))
    assert restored(node, nic)
