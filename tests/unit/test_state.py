"""The state store: atomic per-attachment files, the device index, bounded locks."""

import json
import multiprocessing
import os
import stat
import time

import pytest

from plugin.errors import CniError
from plugin.snapshot import Address, LinkSnapshot
from plugin.state import PHASE_ATTACHED, PHASE_MOVING, Record, StateStore

SNAP = LinkSnapshot("ens1f0", "aa:bb:cc:00:00:01", 9000, True,
                    (Address("inet", "10.0.0.2", 24),), ())


def rec(cid="c1", ifname="net1", key="0000:01:00.0"):
    return Record(cid, ifname, key, key, "/run/netns/p", PHASE_MOVING, SNAP, None, 1.0)


def test_save_load_remove_and_permissions(tmp_path):
    store = StateStore(str(tmp_path / "s"))
    r = rec()
    store.save(r)
    assert store.load("c1", "net1") == r
    assert store.holder_of("0000:01:00.0") == r
    assert stat.S_IMODE(os.stat(tmp_path / "s").st_mode) == 0o700
    path = tmp_path / "s" / "attachments" / "c1@net1.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    store.save(r.with_phase(PHASE_ATTACHED, {"cniVersion": "1.1.0"}))
    assert store.load("c1", "net1").phase == PHASE_ATTACHED
    assert not [n for n in os.listdir(tmp_path / "s" / "attachments") if ".tmp." in n]
    store.remove(r)
    assert store.load("c1", "net1") is None and store.holder_of("0000:01:00.0") is None


def test_a_late_remove_of_an_old_attachment_keeps_the_newer_index(tmp_path):
    store = StateStore(str(tmp_path))
    old, new = rec("old"), rec("new")
    store.save(old)
    store.save(new)
    store.remove(old)
    assert store.holder_of("0000:01:00.0") == new


def test_corrupt_record_is_set_aside_not_fatal(tmp_path):
    store = StateStore(str(tmp_path))
    store.save(rec("a"))
    store.save(rec("b", key="0000:02:00.0"))
    (tmp_path / "attachments" / "a@net1.json").write_text("{not json")
    assert store.load("a", "net1") is None
    assert [r.container_id for r in store.records()] == ["b"]
    assert any(".corrupt." in n for n in os.listdir(tmp_path / "attachments"))


def _hold(root, ready):
    with StateStore(root).lock("0000:01:00.0", 5):
        ready.set()
        time.sleep(3)


def test_lock_wait_is_bounded_and_gives_code_11(tmp_path):
    ready = multiprocessing.Event()
    p = multiprocessing.Process(target=_hold, args=(str(tmp_path), ready))
    p.start()
    try:
        assert ready.wait(5)
        started = time.monotonic()
        with pytest.raises(CniError) as e, StateStore(str(tmp_path)).lock("0000:01:00.0", 0.3):
            pass
        assert e.value.code == 11
        assert time.monotonic() - started < 2.5
        with StateStore(str(tmp_path)).lock("0000:02:00.0", 0.3):
            pass  # other devices are not blocked
    finally:
        p.join()


def test_record_file_is_plain_json(tmp_path):
    store = StateStore(str(tmp_path))
    store.save(rec())
    obj = json.loads((tmp_path / "attachments" / "c1@net1.json").read_text())
    assert obj["snapshot"]["addresses"][0]["local"] == "10.0.0.2" and obj["format"] == 1


# -- the state dir is ours alone (issue 10) --------------------------------------------------

def test_fifo_dir_and_symlink_records_are_set_aside_without_blocking(tmp_path):
    store = StateStore(str(tmp_path / "s"))
    store.save(rec("good"))
    d = tmp_path / "s" / "attachments"
    os.mkfifo(d / "fifo@net1.json")
    (d / "dir@net1.json").mkdir()
    victim = tmp_path / "victim"
    victim.write_text("{}")
    os.symlink(victim, d / "link@net1.json")
    assert [r.container_id for r in store.records()] == ["good"]
    assert sorted(n.split("@")[0] for n in os.listdir(d) if ".corrupt." in n) == \
        ["dir", "fifo", "link"]
    assert victim.read_text() == "{}"


def test_an_index_pointing_outside_is_set_aside_never_followed(tmp_path):
    store = StateStore(str(tmp_path / "s"))
    store.save(rec())
    victim = tmp_path / "victim.json"
    victim.write_text(json.dumps(rec("x").to_json()))
    index = tmp_path / "s" / "devices" / "0000:01:00.0"
    index.unlink()
    os.symlink(victim, index)
    assert store.holder_of("0000:01:00.0") is None
    assert victim.exists() and not index.exists()


def test_a_record_naming_another_attachment_is_corrupt(tmp_path):
    store = StateStore(str(tmp_path))
    store.save(rec("a"))
    d = tmp_path / "attachments"
    os.rename(d / "a@net1.json", d / "b@net1.json")
    assert store.load("b", "net1") is None
    assert any(n.startswith("b@net1.json.corrupt.") for n in os.listdir(d))


def test_long_container_ids_get_short_file_names_and_round_trip(tmp_path):
    store = StateStore(str(tmp_path))
    long_id = "a" * 255
    r = rec(long_id)
    store.save(r)
    name, = os.listdir(tmp_path / "attachments")
    assert len(name.encode()) <= 255 and "~" in name
    assert store.load(long_id, "net1") == r
    assert store.load("a" * 254, "net1") is None
    assert store.holder_of("0000:01:00.0") == r
    store.remove(r)
    assert os.listdir(tmp_path / "attachments") == []


@pytest.mark.parametrize("bad", ["symlink", "file"])
def test_a_state_dir_or_subdir_that_is_not_a_real_dir_is_refused(tmp_path, bad):
    real = tmp_path / "real"
    real.mkdir()
    root = tmp_path / "s"
    root.mkdir()
    if bad == "symlink":
        os.symlink(real, root / "attachments")
    else:
        (root / "attachments").write_text("")
    with pytest.raises(CniError) as e:
        StateStore(str(root)).save(rec())
    assert e.value.code == 5 and "attachments" in e.value.msg
    assert os.listdir(real) == []


def test_only_the_root_is_tightened(tmp_path):
    os.chmod(tmp_path, 0o755)
    root = tmp_path / "s"
    root.mkdir()
    os.chmod(root, 0o755)
    StateStore(str(root)).save(rec())
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path).st_mode) == 0o755  # nothing above it is chmod'ed


@pytest.mark.parametrize("field,value", [
    ("ifname", "net1\nlink del dev x"), ("deviceKey", "../../etc"), ("phase", "gone"),
    ("netns", "relative/path"), ("containerID", "a b"), ("netnsID", "1:2; x"),
    ("created", "yesterday"), ("format", 2)])
def test_record_fields_are_validated(field, value):
    obj = rec().to_json()
    obj[field] = value
    with pytest.raises(ValueError) as e:
        Record.from_json(obj)
    assert field in str(e.value) or "format" in str(e.value)


def test_an_index_pointing_at_another_devices_record_is_set_aside(tmp_path):
    """devices/<A> -> B's record never says A is held (it blocked every ADD of A)."""
    store = StateStore(str(tmp_path))
    b = rec("c2", key="0000:02:00.0")
    store.save(b)
    os.symlink("../attachments/c2@net1.json", tmp_path / "devices" / "0000:01:00.0")
    assert store.holder_of("0000:01:00.0") is None
    assert store.holder_of("0000:02:00.0") == b and store.load("c2", "net1") == b
    assert any(n.startswith("0000:01:00.0.corrupt.") for n in os.listdir(tmp_path / "devices"))


@pytest.mark.parametrize("network", ["n" * 318, "n" * 4096, "a.b_c-d"])
def test_every_network_name_add_accepts_reads_back(tmp_path, network):
    store = StateStore(str(tmp_path))
    r = rec()._replace(network=network, pod="ns/" + "p" * 253)
    store.save(r)
    assert store.load("c1", "net1") == r


def test_a_record_that_would_not_read_back_is_never_written(tmp_path):
    """A field ADD stores that DEL could not read back would lose the NIC: refuse up front."""
    store = StateStore(str(tmp_path))
    with pytest.raises(CniError) as e:
        store.save(rec()._replace(pod="p" * 400))
    assert e.value.code == 7 and "pod" in e.value.msg
    assert os.listdir(tmp_path / "attachments") == []
