"""Results are read in any version and written in exactly the requested one."""

import pytest

from plugin.errors import CniError
from plugin.result import parse_result

HD_100 = {"cniVersion": "1.0.0",
          "interfaces": [{"name": "net1", "mac": "aa:bb:cc:dd:ee:ff", "sandbox": "/run/netns/p"}],
          "ips": [{"interface": 0, "address": "10.0.0.2/24"},
                  {"interface": 0, "address": "fd00::2/64", "gateway": "fd00::1"}],
          "routes": [{"dst": "10.9.0.0/16", "gw": "10.0.0.1"}], "dns": {}}


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0"])
def test_pre_1_0_ips_carry_version(version):
    out = parse_result(HD_100).to_dict(version)
    assert out["cniVersion"] == version
    assert [ip["version"] for ip in out["ips"]] == ["4", "6"]


@pytest.mark.parametrize("version", ["1.0.0", "1.1.0"])
def test_1_x_ips_have_no_version(version):
    out = parse_result(HD_100).to_dict(version)
    assert all("version" not in ip for ip in out["ips"])
    assert out["ips"][1]["gateway"] == "fd00::1"


def test_mtu_and_pci_id_only_in_1_1_0():
    r = parse_result(HD_100).with_interface(0, mtu=9000, pci_id="0000:01:00.0")
    assert r.to_dict("1.1.0")["interfaces"][0] == {
        "name": "net1", "mac": "aa:bb:cc:dd:ee:ff", "mtu": 9000, "sandbox": "/run/netns/p",
        "pciID": "0000:01:00.0"}
    for v in ("0.3.1", "0.4.0", "1.0.0"):
        iface = r.to_dict(v)["interfaces"][0]
        assert "mtu" not in iface and "pciID" not in iface


def test_reads_0_3_1_input():
    old = {"cniVersion": "0.3.1", "interfaces": [{"name": "net1"}],
           "ips": [{"version": "4", "interface": 0, "address": "10.0.0.2/24"}]}
    assert parse_result(old).to_dict("1.0.0")["ips"] == [{"interface": 0, "address": "10.0.0.2/24"}]


def test_round_trip_is_stable():
    out = parse_result(HD_100).to_dict("1.0.0")
    assert parse_result(out).to_dict("1.0.0") == out


@pytest.mark.parametrize("bad", [
    [], {"interfaces": {}}, {"interfaces": [{"mac": "x"}]}, {"ips": [{"address": 5}]},
    {"interfaces": [{"name": "a"}], "ips": [{"address": "1.2.3.4/32", "interface": 3}]},
    {"ips": [{"address": "1.2.3.4/32", "interface": True}]}, {"dns": []},
])
def test_malformed_results_are_decode_errors(bad):
    with pytest.raises(CniError) as e:
        parse_result(bad)
    assert e.value.code == 6
