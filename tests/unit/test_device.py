"""PCI address validation and sysfs resolution against a fake tree."""

import os

import pytest

from plugin import device
from plugin.errors import CniError, NotOnNode
from plugin.node import Node
from tests.support.request_env import use_env

NODE = Node()   # this machine, as the plugin runs commands on it


@pytest.mark.parametrize("given,canonical", [
    ("0000:01:00.0", "0000:01:00.0"), ("0000:AF:00.7", "0000:af:00.7"), ("01:00.1", "0000:01:00.1")])
def test_normalize(given, canonical):
    assert device.normalize_pci(given) == canonical


@pytest.mark.parametrize("bad", ["", "../../etc", "0000:01:00.0/../../x", "0000:01:00.8",
                                 "0000:01:00", "0000:01:00.0\n", "zzzz:01:00.0", "0000:01:00.0 "])
def test_rejects_non_addresses(bad):
    with pytest.raises(CniError) as e:
        device.normalize_pci(bad)
    assert e.value.code == 7


@pytest.fixture
def sysfs(tmp_path, monkeypatch):
    use_env(monkeypatch, device.SYSFS_ENV, str(tmp_path))
    monkeypatch.setattr(device, "APPEAR_SECONDS", 0.2)
    return tmp_path


def make(sysfs, pci, netdevs=(), driver="ionic"):
    d = sysfs / "bus" / "pci" / "devices" / pci
    (d / "net").mkdir(parents=True)
    for n in netdevs:
        (d / "net" / n).mkdir()
    drv = sysfs / "bus" / "pci" / "drivers" / driver
    drv.mkdir(parents=True, exist_ok=True)
    os.symlink(drv, d / "driver")


def test_finds_the_netdev(sysfs):
    make(sysfs, "0000:01:00.0", ["ens1f0"])
    assert device.netdev_for_pci("0000:01:00.0") == "ens1f0"


def test_unknown_pci_device(sysfs):
    with pytest.raises(CniError) as e:
        device.netdev_for_pci("0000:09:00.0")
    assert e.value.code == 7 and "no such PCI device" in e.value.msg


def test_no_netdev_after_waiting(sysfs):
    make(sysfs, "0000:01:00.0")
    with pytest.raises(NotOnNode) as e:  # ADD asks the state store who holds it
        device.netdev_for_pci("0000:01:00.0")
    assert "no network interface" in e.value.msg


def test_an_unsafe_netdev_name_is_named_not_taken_for_missing(sysfs):
    make(sysfs, "0000:01:00.0", ["a#b"])
    with pytest.raises(CniError) as e:
        device.netdev_for_pci("0000:01:00.0")
    assert not isinstance(e.value, NotOnNode)
    assert "'a#b'" in e.value.msg and "cannot be handled safely" in e.value.msg


def test_userspace_driver_is_refused(sysfs):
    make(sysfs, "0000:01:00.0", driver="vfio-pci")
    with pytest.raises(CniError) as e:
        device.netdev_for_pci("0000:01:00.0")
    assert "vfio-pci" in e.value.msg


def test_name_selection_takes_pci_nics_only(sysfs):
    make(sysfs, "0000:01:00.0", ["ens1f0"])
    assert device.resolve(NODE, "", "ens1f0").key == "0000:01:00.0"
    with pytest.raises(CniError) as e:
        device.resolve(NODE, "", "cali0a1b2c3d4e")  # another pod's veth
    assert e.value.code == 7 and "not a PCI NIC" in e.value.msg
    assert "allowNonPciDevices" in e.value.details


def test_name_selection_and_nothing_selected(sysfs):
    assert device.resolve(NODE, "", "fabric0", allow_non_pci=True).key == "name:fabric0"
    with pytest.raises(CniError) as e:
        device.resolve(NODE, "", "")
    assert e.value.code == 7 and "deviceID" in e.value.msg
    with pytest.raises(CniError):
        device.resolve(NODE, "", "../x")
