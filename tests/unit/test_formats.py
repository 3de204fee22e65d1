"""Record and store formats: every shape a release wrote reads back (recorded by those releases,
tests/data/records/), older shapes are upgraded in memory, and what a newer release wrote is
left exactly as it is."""

import json
import os
import pathlib
import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plugin import __version__, doctor, formats, listing
from plugin.errors import TRY_AGAIN_LATER
from plugin.identity import NicIdentity
from plugin.state import StateStore

DATA = pathlib.Path(__file__).resolve().parents[1] / "data" / "records"
NAME = "fixture0123456789@net1.json"
PAST = ["0.1.0-4c5dc17", "0.1.0-35ad0c0", "0.1.0-dca70b3", "0.2.0"]
FUTURE = "future-formatVersion-2"


def store_with(tmp_path, fixture, layout_by_this_release=True):
    store = StateStore(str(tmp_path / "state"))
    if layout_by_this_release:
        store.ensure()
    else:  # as 0.1.0 left it: no format.json
        for d in ("attachments", "devices", "locks"):
            os.makedirs(tmp_path / "state" / d, mode=0o700)
        os.chmod(tmp_path / "state", 0o700)
    path = tmp_path / "state" / "attachments" / NAME
    shutil.copy(DATA / f"{fixture}.json", path)
    os.symlink(f"../attachments/{NAME}", tmp_path / "state" / "devices" / "0000:01:00.0")
    return store, path


def tree(root):
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() and not p.is_symlink()
                                       else os.readlink(p) if p.is_symlink() else None)
            for p in sorted(pathlib.Path(root).rglob("*"))}


def test_every_release_wrote_a_recorded_fixture():
    assert sorted(p.stem for p in DATA.glob("*.json")) == sorted([*PAST, FUTURE])
    assert json.loads((DATA / f"{__version__}.json").read_text())["writtenBy"] == __version__


@pytest.mark.parametrize("fixture", PAST)
def test_every_shape_a_release_wrote_reads_back(tmp_path, fixture):
    store, _ = store_with(tmp_path, fixture, layout_by_this_release=False)
    record = store.load("fixture0123456789", "net1")
    assert record is not None and record.snapshot.name == "ens1f0"
    assert store.holder_of("0000:01:00.0") == record
    assert record.snapshot.addresses and store.set_aside() == []
    raw = json.loads((DATA / f"{fixture}.json").read_text())
    assert record.written_by == raw.get("writtenBy", "0.1.0")
    if "identity" in raw:   # recorded: kept as it was
        assert record.identity == NicIdentity.from_json(raw["identity"])
        assert not record.identity.legacy
    else:                   # before 0.1.0 recorded it: the PCI address, the Go plugin's rule
        assert record.identity == NicIdentity(pci="0000:01:00.0", legacy=True)


@pytest.mark.parametrize("fixture", ["0.1.0-4c5dc17", "0.1.0-35ad0c0"])
def test_an_upgraded_record_saved_again_keeps_what_the_upgrade_gave_it(tmp_path, fixture):
    store, path = store_with(tmp_path, fixture)
    record = store.load("fixture0123456789", "net1")
    store.save(record._replace(orphaned_since=5.0))
    raw = json.loads(path.read_text())
    assert raw["formatVersion"] == raw["format"] == formats.RECORD_VERSION
    assert raw["writtenBy"] == __version__ and raw["identity"]["legacy"] is True
    again = store.load("fixture0123456789", "net1")
    assert again.identity == record.identity and again.orphaned_since == 5.0


def test_a_record_of_a_newer_format_is_left_exactly_as_it_is(tmp_path):
    store, _ = store_with(tmp_path, FUTURE)
    before = tree(tmp_path)
    with pytest.raises(formats.Newer) as e:
        store.load("fixture0123456789", "net1")
    assert e.value.code == TRY_AGAIN_LATER and "9.0.0" in e.value.msg
    assert "formatVersion 2" in e.value.msg
    with pytest.raises(formats.Newer):   # ADD of its device
        store.holder_of("0000:01:00.0")
    assert store.records() == [] and [n.version for n in store.newer] == [2]
    assert tree(tmp_path) == before and store.set_aside() == []


def test_list_shows_a_newer_record_with_the_reason(tmp_path):
    store_with(tmp_path, FUTURE)
    before = tree(tmp_path)
    got = listing.collect(str(tmp_path / "state"))
    assert got["attachments"] == [] and got["corrupt"] == []
    (row,) = got["newer"]
    assert row["formatVersion"] == 2 and row["writtenBy"] == "9.0.0"
    assert NAME in row["what"] and "newer release" in row["reason"]
    text = listing.render(got)
    assert "Written by a newer release" in text and "9.0.0" in text
    assert tree(tmp_path) == before


@pytest.mark.parametrize("header", [{"formatVersion": 1, "format": 2},
                                    {"formatVersion": 0}, {"formatVersion": "1"},
                                    {"formatVersion": True}, {"format": None}])
def test_a_format_that_makes_no_sense_is_corrupt(tmp_path, header):
    store, path = store_with(tmp_path, "0.2.0")
    raw = json.loads(path.read_text())
    raw.pop("format")
    path.write_text(json.dumps(raw | header))
    assert store.load("fixture0123456789", "net1") is None
    assert len(store.set_aside()) == 1


def test_the_store_says_its_format_and_a_newer_one_is_not_touched(tmp_path):
    store_with(tmp_path, "0.2.0")
    fmt = tmp_path / "state" / formats.STORE_FILE
    assert json.loads(fmt.read_text()) == {"formatVersion": 1, "writtenBy": __version__}
    fmt.write_text('{"formatVersion": 2, "writtenBy": "9.0.0"}')
    before = tree(tmp_path)
    fresh = StateStore(str(tmp_path / "state"))
    for act in (lambda: fresh.load("fixture0123456789", "net1"), fresh.records, fresh.ensure,
                lambda: fresh.holder_of("0000:01:00.0")):
        with pytest.raises(formats.Newer) as e:
            act()
        assert e.value.code == TRY_AGAIN_LATER and "the state dir" in e.value.msg
    got = listing.collect(str(tmp_path / "state"))
    assert got["attachments"] == [] and got["newer"][0]["what"] == "the state dir"
    assert tree(tmp_path) == before


def test_a_store_from_0_1_0_gets_its_format_file_on_the_first_write(tmp_path):
    store, _ = store_with(tmp_path, "0.1.0-dca70b3", layout_by_this_release=False)
    fmt = tmp_path / "state" / formats.STORE_FILE
    assert store.load("fixture0123456789", "net1") is not None and not fmt.exists()
    store.ensure()
    assert json.loads(fmt.read_text())["formatVersion"] == formats.STORE_VERSION


def test_an_unreadable_store_format_file_is_set_aside_and_rewritten(tmp_path):
    store, _ = store_with(tmp_path, "0.2.0", layout_by_this_release=False)
    fmt = tmp_path / "state" / formats.STORE_FILE
    fmt.write_text("not json")
    got = listing.collect(str(tmp_path / "state"))   # list reports, changes nothing
    assert [c["path"] for c in got["corrupt"]] == [str(fmt)] and fmt.read_text() == "not json"
    store.ensure()
    assert json.loads(fmt.read_text())["formatVersion"] == 1
    assert any(".corrupt." in n for n in os.listdir(tmp_path / "state"))


def test_doctor_fails_on_a_state_dir_a_newer_release_laid_out(tmp_path):
    store_with(tmp_path, "0.2.0")
    root = str(tmp_path / "state")
    check = doctor._store_format(root)
    assert check.status is doctor.Status.PASS and check.summary.endswith("format 1")
    (tmp_path / "state" / formats.STORE_FILE).write_text('{"formatVersion": 7}')
    check = doctor._store_format(root)
    assert check.status is doctor.Status.FAIL and "newer release" in check.summary
    assert "roll the DaemonSet forward" in check.fix


JSON_SCALARS = st.none() | st.booleans() | st.integers(-5, 2**70) | st.floats() | st.text(max_size=5)


@settings(max_examples=60, deadline=None)
@given(version=JSON_SCALARS | st.just(1.0), mirror=st.booleans())
def test_any_format_value_is_read_set_aside_or_left_alone_never_a_traceback(tmp_path_factory,
                                                                          version, mirror):
    tmp_path = tmp_path_factory.mktemp("f")
    store, path = store_with(tmp_path, "0.2.0")
    raw = json.loads(path.read_text())
    raw["formatVersion"] = version
    if mirror:
        raw["format"] = version
    else:
        raw.pop("format")
    path.write_text(json.dumps(raw))
    integer = type(version) is int   # JSON 1.0 is no format version
    if integer and version > 1:
        with pytest.raises(formats.Newer):
            store.load("fixture0123456789", "net1")
        assert path.exists() and store.set_aside() == []   # never set aside
    elif integer and version == 1:
        assert store.load("fixture0123456789", "net1") is not None
    else:
        assert store.load("fixture0123456789", "net1") is None
        assert len(store.set_aside()) == 1
