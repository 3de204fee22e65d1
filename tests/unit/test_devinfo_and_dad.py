"""plugin/devinfo.py's path rule and content, the record's deviceInfo field, and
plugin/dad.py's reading of which node addresses DAD had proven."""

import json
import os
import pathlib

import pytest

from plugin import dad, devinfo
from plugin.config import parse_netconf
from plugin.errors import CniError
from plugin.snapshot import Address, LinkSnapshot
from plugin.state import PHASE_MOVING, Record
from tests.support.request_env import use_env

SNAP = LinkSnapshot("ens1f0", "aa:bb:cc:00:00:01", 9000, True,
                    (Address("inet", "10.0.0.2", 24),), ())
MULTUS = "/var/run/k8s.cni.cncf.io/devinfo/cni/default-amd-nic-0123abcd_net1"


@pytest.fixture(autouse=True)
def _no_override(monkeypatch):
    use_env(monkeypatch, devinfo.DIR_ENV, None)


def conf(path):
    return {"cniVersion": "1.0.0", "name": "n", "type": "amd-host-device",
            "runtimeConfig": {"CNIDeviceInfoFile": path}}


def checked(path):
    """What ADD does first with the key (plugin/add.py)."""
    return devinfo.check_path(parse_netconf(conf(path)).device_info_file)


@pytest.mark.parametrize("path", [MULTUS, MULTUS.replace("/var/run/", "/run/")])
def test_multus_paths_are_accepted(path):
    assert checked(path) == path


@pytest.mark.parametrize("path", [
    "/etc/shadow", "/var/run/k8s.cni.cncf.io/devinfo/dp/amd.com-nic-0000:01:00.0-device.json",
    "/var/run/k8s.cni.cncf.io/devinfo/cni/../dp/x", "/var/run/k8s.cni.cncf.io/devinfo/cni/",
    "/var/run/k8s.cni.cncf.io/devinfo/cni//x", "/var/run/k8s.cni.cncf.io/devinfo/cni/.hidden",
    "var/run/k8s.cni.cncf.io/devinfo/cni/x", "/var/run/k8s.cni.cncf.io/devinfo/cni/a\nb", 42,
    ["x"]])
def test_anything_else_is_code_7(path):
    with pytest.raises(CniError) as e:
        checked(path)
    assert e.value.code == 7
    assert parse_netconf(conf(path)).device_info_file == path  # DEL does not fail on it


def test_the_override_replaces_the_roots(monkeypatch, tmp_path):
    use_env(monkeypatch, devinfo.DIR_ENV, str(tmp_path))
    assert devinfo.check_path(str(tmp_path / "cni" / "x")) == str(tmp_path / "cni" / "x")
    with pytest.raises(CniError):
        devinfo.check_path(MULTUS)
    assert devinfo.check_path(MULTUS, recorded=True) == MULTUS  # a record stays readable


def test_info_is_the_spec_format_with_the_pf_from_sysfs(monkeypatch, tmp_path):
    use_env(monkeypatch, "AMD_HOST_DEVICE_SYSFS", str(tmp_path))
    vf = tmp_path / "bus" / "pci" / "devices" / "0000:01:00.2"
    vf.mkdir(parents=True)
    assert devinfo.info("0000:01:00.2") == {"type": "pci", "version": "1.1.0",
                                             "pci": {"pci-address": "0000:01:00.2"}}
    os.symlink("../0000:01:00.0", vf / "physfn")
    assert devinfo.info("0000:01:00.2")["pci"] == {"pci-address": "0000:01:00.2",
                                                    "pf-pci-address": "0000:01:00.0"}


def test_write_and_remove(monkeypatch, tmp_path):
    use_env(monkeypatch, devinfo.DIR_ENV, str(tmp_path / "devinfo"))
    path = str(tmp_path / "devinfo" / "cni" / "a_net1")
    assert devinfo.write(path, {"type": "pci"}) is True
    assert json.loads(pathlib.Path(path).read_text()) == {"type": "pci"}
    assert devinfo.write(path, {"type": "other"}) is False  # a file there is not ours
    assert json.loads(pathlib.Path(path).read_text()) == {"type": "pci"}
    devinfo.remove(path)
    devinfo.remove(path)  # gone already is fine
    assert os.listdir(tmp_path / "devinfo" / "cni") == []


def test_the_record_keeps_the_path_and_refuses_a_hostile_one():
    r = Record("c1", "net1", "0000:01:00.0", "0000:01:00.0", "", PHASE_MOVING, SNAP,
               device_info=MULTUS)
    assert Record.from_json(json.loads(json.dumps(r.to_json()))) == r
    assert "deviceInfo" not in r._replace(device_info="").to_json()  # optional
    for bad in ("/etc/passwd", 7, "/var/run/k8s.cni.cncf.io/devinfo/cni/../../../etc/x"):
        with pytest.raises(ValueError):
            Record.from_json({**r.to_json(), "deviceInfo": bad})


def _addr(**flags):
    return {"family": "inet6", "local": "fd00::2", "prefixlen": 64, "scope": "global", **flags}


@pytest.mark.parametrize(("flags", "unproven"), [
    ({}, False), ({"nodad": True}, False), ({"tentative": True}, True),
    ({"tentative": True, "dadfailed": True}, True), ({"tentative": True, "nodad": True}, False),
    ({"tentative": True, "scope": "link"}, False), ({"tentative": True, "scope": 253}, False)])
def test_unproven_addresses_are_the_tentative_or_failed_global_ones(flags, unproven):
    shown = [{"ifname": "ens1f0", "addr_info": [_addr(**flags),
                                                {"family": "inet", "local": "10.0.0.2"}]}]
    assert dad.unproven(shown) == (("fd00::2/64",) if unproven else ())
