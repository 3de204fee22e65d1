"""What becomes of a record after a give-back attempt (DEL, GC, reconcile share the rule), and
which records reconcile takes up: pure decisions over records built from recorded `ip -j`
output, no root."""

import json
import os

import pytest

from plugin.delete import MAX_ORPHAN_SECONDS, Released, verdict
from plugin.giveback import Outcome
from plugin.reconcile import orphans
from plugin.snapshot import parse_snapshot
from plugin.state import PHASE_ATTACHED, Record

DATA = os.path.join(os.path.dirname(__file__), "..", "data")
NOW = 1_800_000_000.0


def snapshot():
    with open(os.path.join(DATA, "addr_show.json")) as f:
        addr = json.load(f)
    with open(os.path.join(DATA, "route_show_table_all.json")) as f:
        routes = json.load(f)
    return parse_snapshot(addr, routes)


def record(netns="/run/netns/pod1", orphaned_since=0.0, cid="c1"):
    return Record(cid, "net1", "0000:01:00.0", "0000:01:00.0", netns, PHASE_ATTACHED,
                  snapshot(), None, NOW - 7200, "4:4026532001", orphaned_since)


DAY = MAX_ORPHAN_SECONDS


@pytest.mark.parametrize("rec,outcome,expected", [
    # given back: the record ends
    (record(), Outcome(True, True), Released.RESTORED),
    (record(orphaned_since=NOW - 2 * DAY), Outcome(True, False), Released.RESTORED),
    # not found, pod alive or gone: kept (first time: becomes an orphan)
    (record(), Outcome(False, True), Released.KEPT),
    (record(), Outcome(False, False), Released.KEPT),
    (record(orphaned_since=NOW - DAY + 60), Outcome(False, False), Released.KEPT),
    # an orphan past its time is forgotten...
    (record(orphaned_since=NOW - DAY), Outcome(False, False), Released.EXPIRED),
    # ...unless its netns is a /proc path that this PID namespace cannot judge
    (record(netns="/proc/4242/ns/net", orphaned_since=NOW - 2 * DAY), Outcome(False, False),
     Released.KEPT),
    # CNI_NETNS was not the pod (refused): the NIC may be safe there; never expires
    (record(orphaned_since=NOW - 2 * DAY), Outcome(False, True, "another namespace"),
     Released.KEPT),
])
def test_verdict(rec, outcome, expected):
    assert verdict(rec, outcome, NOW, MAX_ORPHAN_SECONDS) is expected


def test_reconcile_takes_up_only_records_whose_pod_is_gone():
    live, dead, reused = record(cid="live"), record(cid="dead"), record(cid="reused")
    alive = {"live": True, "dead": False, "reused": False}
    assert orphans([live, dead, reused], lambda r: alive[r.container_id]) == [dead, reused]


def test_reconcile_judges_a_netns_by_identity_not_path(tmp_path):
    """A path that exists but names another namespace (or is no namespace) is not the pod."""
    not_a_netns = tmp_path / "netns"
    not_a_netns.write_text("")
    assert orphans([record(netns=str(not_a_netns)), record(netns="")]) == \
        [record(netns=str(not_a_netns)), record(netns="")]


@pytest.mark.parametrize("name, alias, altnames, taken, node_has_name, as_is", [
    ("net1", "ens1f0", (), False, False, True),     # as host-device left it
    ("ens1f0", "ens1f0", (), False, False, False),  # renamed by the pod: never its name
    ("a\u2000b", "ens1f0", (), False, False, False),  # one host-device calls white space
    ("net1", "", (), False, False, False),          # alias cleared
    ("net1", "eth0", (), False, False, False),      # alias changed by the pod
    ("net1", "ens1f0", ("x",), False, False, False),  # an altname travels with it
    ("net1", "ens1f0", (), True, False, False),     # a pod link squats the name
    ("net1", "ens1f0", (), False, True, False),     # the name is taken on the node
])
def test_a_nic_moves_as_is_only_when_nothing_can_get_in_host_devices_way(
        name, alias, altnames, taken, node_has_name, as_is):
    from plugin.giveback import Link, _moves_as_is

    rec = record()
    assert rec.snapshot.name == "ens1f0" and rec.ifname == "net1"
    link = Link(name, "aa:bb:cc:dd:ee:ff", altnames, alias)
    assert _moves_as_is(rec, link, taken, node_has_name) is as_is
