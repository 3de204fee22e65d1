"""DEL's decisions, without root: plugin/delete.py against a fake node (tests/support/fakenode.py)
that answers from recorded `ip -j` output and records every command.

Covers the main branches: the NIC comes home and gets its configuration back (the ip -batch
lines restore sends), a NIC that is not proven to be there keeps its record, a NIC in the pod
with no record here is code 11, and a pod from AMD's Go plugin (its mapping) is given back
and the mapping dropped.
"""

import json

import pytest

from plugin import add, delete, legacy
from plugin.errors import CniError
from plugin.identity import NicIdentity
from plugin.state import LEGACY_FILE_NAME, StateStore
from tests.support.fakenode import NODE, PCI, POD, a_node_with_one_nic, conf, env


@pytest.fixture
def attached(tmp_path, monkeypatch):
    """The node after a successful ADD of c1/net1."""
    fake, state, cni_path = a_node_with_one_nic(tmp_path, monkeypatch)
    add.add(fake, env(cni_path), conf(state))
    fake.batches.clear()
    return fake, state, cni_path


def test_the_nic_comes_home_with_its_addresses_and_routes(attached):
    fake, state, cni_path = attached
    delete.delete(fake, env(cni_path, command="DEL"), conf(state))
    assert [c for c, _ in fake.spawned] == ["ADD", "DEL"]
    assert fake.find(NODE, "ens1f0") is not None and fake.find(POD, "net1") is None
    lines = fake.changes(NODE)
    assert "address replace 10.20.30.40/24 dev ens1f0" in " | ".join(lines), lines
    assert any(line.startswith("address replace fd00:20::40/64 dev ens1f0") for line in lines)
    assert any("10.99.0.0/16" in line and "via 10.20.30.1" in line for line in lines), lines
    assert StateStore(str(state)).load("c1", "net1") is None
    delete.delete(fake, env(cni_path, command="DEL"), conf(state))   # idempotent
    assert [c for c, _ in fake.spawned] == ["ADD", "DEL"]


def test_a_nic_not_proven_to_be_anywhere_keeps_its_record(attached):
    fake, state, cni_path = attached
    fake.links[POD] = [x for x in fake.links[POD] if x["ifname"] != "net1"]   # not there
    delete.delete(fake, env(cni_path, command="DEL"), conf(state))
    assert [c for c, _ in fake.spawned] == ["ADD"], "nothing to hand host-device"
    assert not fake.changes(NODE)
    record = StateStore(str(state)).load("c1", "net1")
    assert record is not None and record.orphaned_since


def test_an_impostor_in_the_pod_is_not_given_the_nics_configuration(attached):
    fake, state, cni_path = attached
    nic = fake.find(POD, "net1")
    nic.pop("parentdev")
    nic.update(parentbus="", address="02:00:00:00:00:99")   # the pod's own link, renamed
    delete.delete(fake, env(cni_path, command="DEL"), conf(state))
    assert [c for c, _ in fake.spawned] == ["ADD"] and not fake.changes(NODE)
    assert StateStore(str(state)).load("c1", "net1") is not None


def test_no_record_but_the_nic_in_the_pod_is_try_again_later(attached):
    fake, state, cni_path = attached
    other = state.parent / "elsewhere"
    with pytest.raises(CniError) as e:
        delete.delete(fake, env(cni_path, command="DEL"), conf(other))
    assert e.value.code == 11 and PCI in e.value.msg


def test_a_go_plugin_pod_is_given_back_and_its_mapping_dropped(tmp_path, monkeypatch):
    fake, state, cni_path = a_node_with_one_nic(tmp_path, monkeypatch)
    fake.move("ens1f0", NODE, POD, "net1")   # the Go plugin moved it
    fake.renamed["net1"] = "ens1f0"
    state.mkdir()
    (state / LEGACY_FILE_NAME).write_text(json.dumps({
        PCI: {"hostInterfaceName": "ens1f0", "hostInterfaceIPs": ["10.20.30.40/24"],
              "state": "UP"}}))
    delete.delete(fake, env(cni_path, command="DEL"), conf(state))
    assert [c for c, _ in fake.spawned] == ["DEL"]
    assert fake.find(NODE, "ens1f0") is not None
    assert any(line.startswith("address replace 10.20.30.40/24 dev ens1f0")
               for line in fake.changes(NODE))
    assert legacy.find(str(state), PCI) is None


def test_a_sweep_gives_back_a_go_plugin_mapping_only_when_its_nic_is_home(tmp_path, monkeypatch):
    """GC and reconcile: a mapping names no pod, so only a NIC on the node (proven by sysfs)
    is restored from it; one keyed by a name is left alone."""
    fake, state, cni_path = a_node_with_one_nic(tmp_path, monkeypatch)
    state.mkdir()
    (state / LEGACY_FILE_NAME).write_text(json.dumps({
        PCI: {"hostInterfaceName": "ens1f0", "hostInterfaceIPs": ["10.20.30.40/24"],
              "state": "UP"},
        "eth9": {"hostInterfaceName": "eth9", "hostInterfaceIPs": ["10.9.9.9/24"]}}))
    errors = delete.give_back_all(fake, StateStore(str(state)), [], cni_path, 1.0, 3600.0)
    assert errors == [] and not fake.spawned, "a NIC on the node needs no host-device"
    assert any(line.startswith("address replace 10.20.30.40/24 dev ens1f0")
               for line in fake.changes(NODE))
    assert not any("10.9.9.9" in line for line in fake.changes(NODE))
    assert legacy.find(str(state), PCI) is None and legacy.find(str(state), "eth9") is not None


def test_a_record_of_ours_from_before_identities_is_not_a_go_plugin_mapping(attached):
    """A 0.1.0 record is upgraded with identity.legacy (plugin/formats.py), as a mapping is
    read: it is still ours, so one that is not proven is kept and marked orphaned."""
    fake, state, cni_path = attached
    store = StateStore(str(state))
    record = store.load("c1", "net1")
    store.save(record._replace(identity=NicIdentity(legacy=True)))
    fake.links[POD] = [x for x in fake.links[POD] if x["ifname"] != "net1"]
    delete.delete(fake, env(cni_path, command="DEL"), conf(state))
    kept = store.load("c1", "net1")
    assert kept is not None and kept.identity.legacy and kept.orphaned_since
