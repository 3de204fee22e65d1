"""ADD's decisions, without root: plugin/add.py against a fake node (tests/support/fakenode.py)
that answers from recorded `ip -j` output and records every command.

Covers the main branches: the move (record first, then host-device with the NIC's own
addresses as static IPAM), the rollback (host-device fails: the NIC is restored and the record
dropped), a NIC another attachment holds (103), and a Go plugin mapping for the NIC (restored
before the NIC is recorded afresh). The root integration suite runs the same paths for real.
"""

import json

import pytest

from plugin import add, legacy
from plugin.errors import CniError
from plugin.state import LEGACY_FILE_NAME, PHASE_ATTACHED, StateStore
from tests.support.fakenode import CIDRS, NODE, PCI, POD, a_node_with_one_nic
from tests.support.fakenode import conf as _conf
from tests.support.fakenode import env as _env


@pytest.fixture
def world(tmp_path, monkeypatch):
    return a_node_with_one_nic(tmp_path, monkeypatch)


def test_the_nic_is_recorded_then_moved_with_its_own_addresses(world):
    fake, state, cni_path = world
    result = add.add(fake, _env(cni_path), _conf(state))
    [(command, sent)] = fake.spawned
    assert command == "ADD" and sent["device"] == "ens1f0"
    assert sent["ipam"] == {"type": "static", "addresses": [{"address": c} for c in CIDRS]}
    assert fake.find(POD, "net1") is not None and fake.find(NODE, "ens1f0") is None
    record = StateStore(str(state)).load("c1", "net1")
    assert record.phase == PHASE_ATTACHED and record.device_key == PCI
    assert {a.cidr for a in record.snapshot.addresses} == set(CIDRS)
    assert record.identity.pci == PCI
    assert result.interfaces[0].name == "net1" and result.interfaces[0].pci_id == PCI
    assert not fake.changes(NODE), "ADD changes nothing on the node but the move"


def test_a_failed_move_is_rolled_back_and_the_record_dropped(world):
    fake, state, cni_path = world
    fake.fail_delegate["ADD"] = "no such device"
    with pytest.raises(CniError) as e:
        add.add(fake, _env(cni_path), _conf(state))
    assert e.value.code == 100 and "no such device" in e.value.msg
    assert StateStore(str(state)).load("c1", "net1") is None
    restored = fake.changes(NODE)
    assert any(line.startswith("address replace 10.20.30.40/24 dev ens1f0") for line in restored), \
        restored
    assert any("10.99.0.0/16" in line and "via 10.20.30.1" in line for line in restored), restored


def test_a_nic_another_attachment_holds_is_refused_with_103(world):
    fake, state, cni_path = world
    add.add(fake, _env(cni_path), _conf(state))
    before = list(fake.commands)
    with pytest.raises(CniError) as e:
        add.add(fake, _env(cni_path, container="c2"), _conf(state))
    assert e.value.code == 103 and "c1/net1" in e.value.msg
    assert not [c for c in fake.commands[len(before):] if "-batch" in c and "-j" not in c], \
        "a refused ADD changes nothing"
    assert len(fake.spawned) == 1


def test_a_go_plugin_mapping_is_restored_before_the_nic_is_recorded(world):
    fake, state, cni_path = world
    state.mkdir()
    (state / LEGACY_FILE_NAME).write_text(json.dumps({
        PCI: {"hostInterfaceName": "ens1f0", "hostInterfaceIPs": ["10.20.30.40/24"],
              "state": "UP"}}))
    add.add(fake, _env(cni_path), _conf(state))
    assert any(line.startswith("address replace 10.20.30.40/24 dev ens1f0")
               for line in fake.changes(NODE))
    assert fake.spawned[0][1]["device"] == "ens1f0"
    assert legacy.find(str(state), PCI) is None, "the mapping is dropped"
