"""Route injection: AMD's semantics (IPv4) and ours for IPv6, and every validation rule."""

import pytest

from plugin import route_injection as routes
from plugin.errors import CniError
from plugin.snapshot import Address


def v4(cidr, peer=""):
    ip, prefix = cidr.split("/")
    return Address("inet", ip, int(prefix), peer=peer)


def v6(cidr):
    ip, prefix = cidr.split("/")
    return Address("inet6", ip, int(prefix))


def derive(addrs, offset, prefix, version=4):
    found, skipped = routes.derive(addrs, [routes.Injection(version, offset, prefix)])
    return [(r.dst, r.gw) for r in found], skipped


@pytest.mark.parametrize("addr,offset,prefix,expected", [
    ("10.1.2.130/25", 1, 19, ("10.1.0.0/19", "10.1.2.129")),      # the issue's examples
    ("10.1.2.130/25", 1, 0, ("0.0.0.0/0", "10.1.2.129")),
    ("192.168.4.8/31", 0, 0, ("0.0.0.0/0", "192.168.4.9")),
    ("192.168.4.9/31", 5, 16, ("192.168.0.0/16", "192.168.4.8")),  # /31: offset ignored
    ("10.0.0.77/24", 0, 8, ("10.0.0.0/8", "10.0.0.0")),
    ("10.0.0.77/24", 255, 16, ("10.0.0.0/16", "10.0.0.255")),
])
def test_ipv4_table(addr, offset, prefix, expected):
    assert derive([v4(addr)], offset, prefix) == ([expected], [])


def test_peer_style_address_counts_with_its_real_prefix_and_peer():
    # `ip addr add 10.1.2.5 peer 10.1.2.4/31`: local /32, real prefix on the peer
    assert derive([v4("10.1.2.5/31", peer="10.1.2.4")], 3, 0) == ([("0.0.0.0/0", "10.1.2.4")], [])


@pytest.mark.parametrize("addr,offset,prefix,why", [
    ("10.1.2.130/25", 1, 25, "must be shorter"),
    ("10.1.2.130/25", 1, 30, "must be shorter"),
    ("10.1.2.130/25", 128, 16, "does not fit"),
    ("10.9.9.9/32", 0, 0, "address itself"),
    ("10.0.0.1/24", 1, 8, "address itself"),
])
def test_addresses_that_break_the_rules_are_skipped_with_a_reason(addr, offset, prefix, why):
    found, skipped = derive([v4(addr)], offset, prefix)
    assert found == [] and len(skipped) == 1 and why in skipped[0]


def test_one_route_per_address_of_the_family_only():
    addrs = [v4("10.1.2.130/25"), v4("172.16.0.10/24"), v6("fd00::5/64")]
    found, _ = derive(addrs, 1, 8)
    assert found == [("10.0.0.0/8", "10.1.2.129"), ("172.0.0.0/8", "172.16.0.1")]


@pytest.mark.parametrize("addr,offset,prefix,expected", [
    ("fd00:1:2:3::10/64", 1, 48, ("fd00:1:2::/48", "fd00:1:2:3::1")),
    ("fd00:1:2:3::10/64", 1, 0, ("::/0", "fd00:1:2:3::1")),
    ("2001:db8::a/127", 7, 0, ("::/0", "2001:db8::b")),
])
def test_ipv6_table(addr, offset, prefix, expected):
    assert derive([v6(addr), v4("10.0.0.1/24")], offset, prefix, version=6) == ([expected], [])


def test_parse_both_keys_per_family():
    inj, warnings = routes.parse({"nexthopNetAddrOffset": 1, "routeDstPrefixLen": 16,
                                  "nexthopNetAddrOffset6": 2, "routeDstPrefixLen6": 0})
    assert inj == (routes.Injection(4, 1, 16), routes.Injection(6, 2, 0)) and warnings == ()


def test_integral_floats_are_accepted_like_amds_plugin():
    inj, _ = routes.parse({"nexthopNetAddrOffset": 1.0, "routeDstPrefixLen": 16.0})
    assert inj == (routes.Injection(4, 1, 16),)


@pytest.mark.parametrize("conf", [{"nexthopNetAddrOffset": 1}, {"routeDstPrefixLen": 0},
                                  {"routeDstPrefixLen6": 64}])
def test_one_key_without_the_other_warns_and_injects_nothing(conf):
    inj, warnings = routes.parse(conf)
    assert inj == () and len(warnings) == 1 and "without" in warnings[0]


@pytest.mark.parametrize("key,value", [
    ("nexthopNetAddrOffset", -1), ("nexthopNetAddrOffset", "1"), ("nexthopNetAddrOffset", 1.5),
    ("nexthopNetAddrOffset", True), ("nexthopNetAddrOffset", None), ("nexthopNetAddrOffset", 2**32),
    ("routeDstPrefixLen", 33), ("routeDstPrefixLen", -1), ("routeDstPrefixLen", [16]),
    ("routeDstPrefixLen6", 129), ("nexthopNetAddrOffset6", -5), ("nexthopNetAddrOffset6", "x"),
])
def test_bad_values_are_code_7_naming_the_key(key, value):
    partner = {"nexthopNetAddrOffset": "routeDstPrefixLen", "routeDstPrefixLen": "nexthopNetAddrOffset",
               "routeDstPrefixLen6": "nexthopNetAddrOffset6",
               "nexthopNetAddrOffset6": "routeDstPrefixLen6"}[key]
    with pytest.raises(CniError) as e:
        routes.parse({key: value, partner: 0})
    assert e.value.code == 7 and key in e.value.msg
