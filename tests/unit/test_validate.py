"""Values read back from disk are checked before any can reach `ip` (plugin/validate.py), and
`ip_batch`'s own last line of defence (plugin/backend.py)."""

import pytest

from plugin import backend
from plugin import validate as v
from plugin.legacy import _entry
from plugin.node import Node
from plugin.snapshot import Address, RouteEntry

NODE = Node()   # this machine, as the plugin runs commands on it


@pytest.mark.parametrize("bad", ["", "a" * 16, "a b", "a/b", "a:b", "a;b", "a#b", 'a"b',
                                 "a\\b", "a\nb", ".", "..", 5, None])
def test_interface_names(bad):
    with pytest.raises(v.Corrupt):
        v.ifname(bad, "name")


def test_addresses_and_macs_are_parsed_and_canonical():
    assert v.ip("FD00::0001", "x") == "fd00::1"
    assert v.mac("AA:BB:CC:00:00:01", "m") == "aa:bb:cc:00:00:01"
    for bad in ("10.0.0.1\nx", "10.0.0.256", "fe80::1%eth0", " 10.0.0.1"):
        with pytest.raises(v.Corrupt):
            v.ip(bad, "x")
    with pytest.raises(v.Corrupt):
        v.ip("fd00::1", "x", version=4)
    with pytest.raises(v.Corrupt):
        v.mac("aa:bb:cc:00:00", "m")


@pytest.mark.parametrize("field,value", [
    ("dst", "10.0.0.0/24 dev x"), ("dst", "10.0.0.1/24"), ("gateway", "x"),
    ("gateway", "fe80::1%x\nnetns exec y touch z"), ("dst", "fe80::%x y/64"),
    ("table", "fabric"), ("table", -1), ("protocol", 256), ("scope", "nowhere\n"),
    ("type", "exec"), ("metric", True), ("pref", "urgent"), ("metrics", [["rtt", 1]]),
    ("onlink", "yes"), ("extra", 1), ("prefsrc", "fd00::1")])
def test_route_fields(field, value):
    r = {"family": "inet", "dst": "10.0.0.0/24", "gateway": "10.0.0.1"}
    r[field] = value
    with pytest.raises(v.Corrupt) as e:
        RouteEntry.from_json(r)
    assert field in str(e.value) or "unknown" in str(e.value)


def test_address_fields():
    ok = {"family": "inet", "local": "10.0.0.2", "prefixlen": 24}
    assert Address.from_json(ok).cidr == "10.0.0.2/24"
    for field, value in (("prefixlen", 33), ("local", "10.0.0.2/24"), ("flags", ["x"]),
                         ("label", "a b"), ("family", "inet7"), ("broadcast", "fd00::1")):
        with pytest.raises(v.Corrupt):
            Address.from_json({**ok, field: value})


def test_legacy_entries_are_checked():
    good = {"hostInterfaceName": "ens1f0", "hostInterfaceIPs": ["10.0.0.2/24"], "state": "UP"}
    assert _entry("0000:01:00.0", good).host_ifname == "ens1f0"
    assert _entry("0000:01:00.0", {**good, "hostInterfaceName": "ens1f0\nnetns exec"}) is None
    assert _entry("0000:01:00.0", {**good, "hostInterfaceIPs": ["10.0.0.2/24\nx"]}) is None
    assert _entry("../../x", good) is None


@pytest.mark.parametrize("line", ["link set dev a up\nnetns exec x touch y", "a; b", "a#b",
                                  "a'b", "", "x\x00"])
def test_ip_batch_refuses_unsafe_lines(line):
    with pytest.raises(backend.UnsafeLine):
        backend.ip_batch(NODE, [line])


def test_batch_stderr_attribution():
    ran, to_end = backend._attributed('Cannot find device "x"\nCommand failed -:2\n')
    assert ran == [(2, 'Cannot find device "x"')] and to_end
    ran, to_end = backend._attributed('Cannot find device "x"\nCommand failed -:2\n'
                                      'Error: inet address is expected rather than "y".\n')
    assert ran == [(2, 'Cannot find device "x"')] and not to_end
    assert backend._attributed("Error: any parse error\n") == ([], False)


@pytest.mark.parametrize("name, ok", [
    ("enp1s0f0", True), ("a#b", True), ("\udcff\udcfe", True), ("x\x01y", True),
    ("x y", False), ("x\ny", False), ("x/y", False), ("x\ty", False), ("x\x0by", False),
    ("", False), ("x" * 128, False), ("x\0y", False), ("\ud800", False),
])
def test_argv_altname_is_what_ip_takes_as_an_argv_word(name, ok):
    from plugin.validate import argv_altname

    assert argv_altname(name) is ok
