"""The NAD on stdin: device selection precedence and validation with the key named."""

import pytest

from plugin.config import decode, parse_netconf
from plugin.errors import CniError
from plugin.policy import DEFAULT_STATE_DIR, NodePolicy

MIN = {"cniVersion": "1.0.0", "name": "nad", "type": "amd-host-device"}


def test_defaults():
    c = parse_netconf(MIN)
    assert (c.state_dir, c.allow_default_route, c.ipam, c.device_id) == (DEFAULT_STATE_DIR, False,
                                                                         None, "")


def test_device_id_precedence():
    """Top-level deviceID/pciBusID (what Multus injects) win; runtimeConfig.deviceID only when
    neither is set; the same function written two ways is one device."""
    assert parse_netconf({**MIN, "pciBusID": "0000:03:00.0", "deviceID": "03:00.0",
                          "runtimeConfig": {"deviceID": "0000:03:00.0"}}
                         ).device_id == "03:00.0"
    assert parse_netconf({**MIN, "pciBusID": "0000:03:00.0"}).device_id == "0000:03:00.0"
    assert parse_netconf({**MIN, "runtimeConfig": {"deviceID": "0000:01:00.0"}}
                         ).device_id == "0000:01:00.0"


@pytest.mark.parametrize("keys,named", [
    ({"deviceID": "0000:02:00.0", "runtimeConfig": {"deviceID": "0000:01:00.0"}},
     "runtimeConfig.deviceID"),
    ({"pciBusID": "0000:02:00.0", "runtimeConfig": {"deviceID": "0000:01:00.0"}},
     "runtimeConfig.deviceID"),
    ({"deviceID": "0000:02:00.0", "pciBusID": "0000:03:00.0"}, "pciBusID"),
])
def test_device_ids_that_disagree_are_code_7(keys, named):
    """A NAD's literal runtimeConfig.deviceID must not pick another NIC than the allocation."""
    with pytest.raises(CniError) as e:
        parse_netconf({**MIN, **keys})
    assert e.value.code == 7 and named in e.value.msg


@pytest.mark.parametrize("name", ["n", "amd-host-device-nad", "a.b_c-1", "9", "n" * 4096])
def test_network_names_libcni_accepts(name):
    assert parse_netconf({**MIN, "name": name}).name == name


@pytest.mark.parametrize("name", ["", "-a", ".a", "_a", "a b", "a/b", "a\nb", "né", "a:b",
                                  "n" * 4097])
def test_network_names_libcni_refuses_are_code_7(name):
    with pytest.raises(CniError) as e:
        parse_netconf({**MIN, "name": name})
    assert e.value.code == 7 and "name" in e.value.msg


def test_ipam_type_must_be_allowed_by_node_policy():
    """A NAD's ipam.type names a plugin the node runs as root: only the admin's list."""
    assert parse_netconf({**MIN, "ipam": {"type": "static"}}).ipam == {"type": "static"}
    for kind in ("host-local", "bridge", "ptp", "../../bin/sh"):
        with pytest.raises(CniError) as e:
            parse_netconf({**MIN, "ipam": {"type": kind}})
        assert e.value.code == 7 and "ipam.type" in e.value.msg
        assert "allowedIpamTypes" in e.value.details
    policy = NodePolicy(allowed_ipam_types=("static", "whereabouts"))
    assert parse_netconf({**MIN, "ipam": {"type": "whereabouts"}}, policy).ipam is not None
    with pytest.raises(CniError):
        parse_netconf({**MIN, "ipam": {"type": "host-local"}}, policy)


@pytest.mark.parametrize("raw", [b"", b"{", b"[1]", b"\xff\xfe", b"null", b'"x"', b"[" * 100000])
def test_undecodable_is_code_6(raw):
    with pytest.raises(CniError) as e:
        decode(raw)
    assert e.value.code == 6


@pytest.mark.parametrize("key,value", [
    ("name", ""), ("name", 5), ("deviceID", 7), ("stateDir", "relative"), ("stateDir", "/a/../b"),
    ("allowDefaultRouteDevice", "yes"), ("lockTimeoutSeconds", 0), ("lockTimeoutSeconds", True),
    ("ipam", {"type": ""}), ("ipam", []), ("runtimeConfig", "x"), ("prevResult", [1]),
])
def test_invalid_values_name_the_key(key, value):
    with pytest.raises(CniError) as e:
        parse_netconf({**MIN, key: value})
    assert e.value.code == 7 and key in e.value.msg


def test_missing_cni_version_is_invalid_config():
    with pytest.raises(CniError) as e:
        parse_netconf({"name": "n"})
    assert e.value.code == 7 and "cniVersion" in e.value.msg


def test_unsupported_version_is_code_1():
    with pytest.raises(CniError) as e:
        parse_netconf({**MIN, "cniVersion": "0.2.0"})
    assert e.value.code == 1


@pytest.mark.parametrize("key", ["hwaddr", "kernelpath"])
def test_other_host_device_selectors_are_unsupported_fields(key):
    with pytest.raises(CniError) as e:
        parse_netconf({**MIN, key: "x"})
    assert e.value.code == 2 and key in e.value.msg


@pytest.mark.parametrize("key,value", [
    ("stateDir", "/etc"), ("stateDir", "/"), ("stateDir", "/var/lib/cni/other"),
    ("allowDefaultRouteDevice", True),
])
def test_nad_cannot_widen_node_policy(key, value):
    with pytest.raises(CniError) as e:
        parse_netconf({**MIN, key: value})
    assert e.value.code == 7 and key in e.value.msg and "node policy" in e.value.details


def test_nad_keys_that_agree_with_node_policy_are_accepted():
    policy = NodePolicy(state_dir="/srv/ahd", allow_default_route_device=True)
    c = parse_netconf({**MIN, "stateDir": "/srv//ahd/", "allowDefaultRouteDevice": True}, policy)
    assert (c.state_dir, c.allow_default_route) == ("/srv/ahd", True)
    # and a NAD may narrow what the node allows
    assert not parse_netconf({**MIN, "allowDefaultRouteDevice": False}, policy).allow_default_route
