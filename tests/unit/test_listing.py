"""`list` over a real state store in a temp dir: empty, attached, orphaned, legacy, corrupt,
busy; and it never changes a byte of the store."""

import hashlib
import json
import os
import pathlib
import threading

import pytest

from plugin import __version__, listing
from plugin.snapshot import Address, LinkSnapshot
from plugin.state import PHASE_ATTACHED, PHASE_MOVING, Record, StateStore

NOW = 1_800_000_000.0


def snapshot(name="ens1f0"):
    return LinkSnapshot(name, "02:00:00:00:00:01", 9000, True,
                        (Address("inet", "10.1.1.2", 24), Address("inet6", "fd00:1::2", 64)), ())


def record(cid="c0123456789abcdef", ifname="net1", pci="0000:01:00.0", **kw):
    base = dict(container_id=cid, ifname=ifname, device_key=pci, pci_address=pci,
                netns="/proc/self/ns/net", phase=PHASE_ATTACHED, snapshot=snapshot(),
                created=NOW - 3700, pod="team-a/web-0")
    base.update(kw)
    return Record(**base)


def tree(root):
    """Every path, its kind, mode and contents: what "never changes the store" means."""
    out = {}
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(d, name)
            st = os.lstat(p)
            body = os.readlink(p) if os.path.islink(p) else \
                (hashlib.sha256(pathlib.Path(p).read_bytes()).hexdigest() if os.path.isfile(p) else "")
            out[os.path.relpath(p, root)] = (st.st_mode, body)
    return out


def test_empty_and_missing_state_dir(tmp_path):
    missing = tmp_path / "state"
    got = listing.collect(str(missing), now=NOW)
    assert got == {"schema": "amd-host-device/list/v1", "stateDir": str(missing),
                   "generatedAt": "2027-01-15T08:00:00Z", "attachments": [], "legacy": [],
                   "corrupt": [], "newer": []}
    assert not missing.exists()   # nothing created
    assert "none" in listing.render(got, now=NOW)


def test_attached_row(tmp_path):
    store = StateStore(str(tmp_path))
    store.save(record())
    before = tree(tmp_path)
    got = listing.collect(str(tmp_path), now=NOW)
    (row,) = got["attachments"]
    assert row == {"pod": "team-a/web-0", "containerID": "c0123456789abcdef", "ifname": "net1",
                   "pciAddress": "0000:01:00.0", "deviceKey": "0000:01:00.0", "netdev": "ens1f0",
                   "addresses": ["10.1.1.2/24", "fd00:1::2/64"], "phase": "attached",
                   "created": "2027-01-15T06:58:20Z", "ageSeconds": 3700,
                   "netns": "/proc/self/ns/net", "netnsAlive": True, "orphaned": False,
                   "orphanedSince": None, "busy": False, "writtenBy": __version__}
    table = listing.render(got, now=NOW).splitlines()
    assert table[1].split() == ["POD", "CONTAINER", "IFNAME", "PCI", "NETDEV", "ADDRESSES",
                                "PHASE", "AGE", "ORPHANED", "BY"]
    assert table[2].split() == ["team-a/web-0", "c0123456789a", "net1", "0000:01:00.0",
                                "ens1f0", "10.1.1.2/24,fd00:1::2/64", "attached", "1h", "no",
                                __version__]
    assert tree(tmp_path) == before


def test_orphaned_rows(tmp_path):
    store = StateStore(str(tmp_path))
    store.save(record("c1", orphaned_since=NOW - 7200, netns=str(tmp_path / "gone")))
    store.save(record("c2", pci="0000:02:00.0", netns=str(tmp_path / "gone"), phase=PHASE_MOVING))
    rows = {r["containerID"]: r for r in listing.collect(str(tmp_path), now=NOW)["attachments"]}
    assert rows["c1"]["orphaned"] and rows["c1"]["orphanedSince"] == "2027-01-15T06:00:00Z"
    assert rows["c2"]["orphaned"] and rows["c2"]["orphanedSince"] is None
    assert not rows["c2"]["netnsAlive"] and rows["c2"]["phase"] == "moving"
    table = listing.render(listing.collect(str(tmp_path), now=NOW), now=NOW)
    assert "since 2027-01-15T06:00:00Z (2h)" in table and "pod netns gone" in table


def test_legacy_mappings_are_listed_as_such(tmp_path):
    (tmp_path / "ip-interface-mappings.json").write_text(json.dumps({
        "0000:03:00.0": {"hostInterfaceName": "ens2f0", "hostInterfaceIPs": ["10.9.0.2/24"],
                         "state": "UP"},
        "bogus": "not an entry"}))
    before = tree(tmp_path)
    got = listing.collect(str(tmp_path), now=NOW)
    assert got["legacy"] == [{"deviceID": "0000:03:00.0", "netdev": "ens2f0",
                              "addresses": ["10.9.0.2/24"], "up": True}]
    assert [c["reason"] for c in got["corrupt"]] == ["legacy entry 'bogus' is not valid"]
    table = listing.render(got, now=NOW)
    assert "Legacy mappings (AMD Go plugin's ip-interface-mappings.json" in table
    assert "0000:03:00.0" in table and "ens2f0" in table
    assert tree(tmp_path) == before


def test_unreadable_legacy_file_is_reported_not_touched(tmp_path):
    (tmp_path / "ip-interface-mappings.json").write_text("{not json")
    got = listing.collect(str(tmp_path), now=NOW)
    assert got["legacy"] == []
    (bad,) = got["corrupt"]
    assert bad["path"].endswith("ip-interface-mappings.json") and not bad["setAside"]
    assert (tmp_path / "ip-interface-mappings.json").read_text() == "{not json"


def test_corrupt_records_are_reported_where_they_lie(tmp_path):
    store = StateStore(str(tmp_path))
    store.save(record("good"))
    att = tmp_path / "attachments"
    (att / "bad@net1.json").write_text("{truncated")
    (att / "old@net2.json.corrupt.1700000000").write_text("{x")
    (att / "hostile@net3.json").write_text(json.dumps({**record("h").to_json(), "pod": 7}))
    before = tree(tmp_path)
    got = listing.collect(str(tmp_path), now=NOW)
    assert [r["containerID"] for r in got["attachments"]] == ["good"]
    corrupt = {os.path.basename(c["path"]): c for c in got["corrupt"]}
    assert set(corrupt) == {"bad@net1.json", "hostile@net3.json",
                            "old@net2.json.corrupt.1700000000"}
    assert not corrupt["bad@net1.json"]["setAside"]
    assert corrupt["old@net2.json.corrupt.1700000000"]["setAside"]
    assert tree(tmp_path) == before   # the plugin would have set them aside; list must not
    table = listing.render(got, now=NOW)
    assert "CORRUPT" in table and "set aside" in table


def test_a_held_device_is_listed_busy_from_its_last_record(tmp_path, monkeypatch):
    monkeypatch.setattr(listing, "LOCK_WAIT_SECONDS", 0.05)
    store = StateStore(str(tmp_path))
    store.save(record())
    holding, release = threading.Event(), threading.Event()

    def hold():
        with StateStore(str(tmp_path)).lock("0000:01:00.0", timeout=5):
            holding.set()
            release.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert holding.wait(30)
        (row,) = listing.collect(str(tmp_path), now=NOW)["attachments"]
        assert row["busy"] and row["phase"] == "attached"
        assert "attached (busy)" in listing.render(listing.collect(str(tmp_path), now=NOW))
    finally:
        release.set()
        t.join()
    (row,) = listing.collect(str(tmp_path), now=NOW)["attachments"]
    assert not row["busy"]


def test_a_record_deleted_while_waiting_for_its_lock_is_not_listed(tmp_path):
    store = StateStore(str(tmp_path))
    rec = record()
    store.save(rec)
    found = store.records()[0]
    store.remove(rec)
    assert listing._attachment(StateStore(str(tmp_path), read_only=True), found, NOW) is None


def test_the_plugin_still_sets_corrupt_records_aside(tmp_path):
    """read_only is the operator's view only: the plugin's own store keeps its behaviour."""
    store = StateStore(str(tmp_path))
    store.ensure()
    (tmp_path / "attachments" / "bad@net1.json").write_text("{")
    assert store.records() == []
    assert [n for n in os.listdir(tmp_path / "attachments") if ".corrupt." in n]


@pytest.mark.parametrize("pod", ["a\nb", "x" * 400, 5])
def test_a_hostile_pod_field_makes_the_record_unreadable_not_the_table(tmp_path, pod):
    att = tmp_path / "attachments"
    att.mkdir(parents=True)
    (att / "c1@net1.json").write_text(json.dumps({**record("c1").to_json(), "pod": pod}))
    got = listing.collect(str(tmp_path), now=NOW)
    assert got["attachments"] == [] and len(got["corrupt"]) == 1
    assert all(line.isprintable() for line in listing.render(got, now=NOW).splitlines())
