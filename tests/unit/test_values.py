"""Values read back from disk are checked before any can reach `ip` (plugin/values.py), and
`ip_batch`'s own last line of defence (plugin/backend.py)."""

import pytest

from plugin import backend
from plugin import values as v
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
    from plugin.values import argv_altname

    assert argv_altname(name) is ok


# -- one definition per value (plugin/values.py, issue 24) ---------------------------------
@pytest.mark.parametrize(("text", "canonical"), [
    ("0000:01:00.0", "0000:01:00.0"), ("0000:AF:1F.7", "0000:af:1f.7"), ("01:00.1", "0000:01:00.1"),
    ("aF:00.0", "0000:af:00.0")])
def test_a_pci_address_as_written_is_made_canonical(text, canonical):
    assert v.normal_pci(text) == canonical
    assert v.is_pci(canonical)


@pytest.mark.parametrize("bad", ["", "0000:01:00.8", "0000:01:00", "1:00.0", "00000:01:00.0",
                                 "0000:01:00.0\n", "g000:01:00.0", "net1"])
def test_anything_else_is_not_a_pci_address(bad):
    with pytest.raises(v.Invalid):
        v.normal_pci(bad)
    assert not v.is_pci(bad)
    with pytest.raises(v.Corrupt):
        v.pci_address(bad or 5, "pciAddress")


def test_only_the_canonical_form_is_a_recorded_pci_address():
    assert not v.is_pci("0000:AF:00.0") and not v.is_pci("01:00.0")
    assert v.pci_address("", "pciAddress") == ""
    with pytest.raises(v.Invalid):
        v.pci_address("", "pciAddress", empty=False)


def test_a_permanent_mac_is_six_octets_and_a_link_layer_address_may_be_longer():
    ib = ":".join(["80"] * 20)
    assert v.valid_mac(ib) and v.mac(ib, "m") == ib
    assert not v.is_ethernet_mac(ib) and v.permanent_mac(ib) == ""
    assert v.permanent_mac(" AA:BB:CC:00:00:01\n") == "aa:bb:cc:00:00:01"
    assert v.permanent_mac("00:00:00:00:00:00") == ""
    assert not v.is_ethernet_mac("AA:BB:CC:00:00:01")   # recorded ones are lower case


def test_a_container_id_is_what_add_accepts_and_what_a_record_reads_back():
    assert v.container_id("a" * v.CONTAINER_ID_MAX, "id") == "a" * 255
    for bad in ("a" * 256, "-a", "a@b", "a/b", "", 5):
        with pytest.raises(v.Invalid):
            v.container_id(bad, "id")
    assert v.valid_network_name("n" * 4096) and not v.valid_network_name("n" * 4097)


def test_the_batch_rule_is_the_one_names_are_checked_against():
    for c in "\n\r;\0\"'\\#":
        assert not v.batch_safe(f"link set dev a{c}b up")
        assert not v.valid_ifname(f"a{c}b") and not v.valid_altname(f"a{c}b")
    assert v.batch_safe("link set dev eth0 up") and not v.batch_safe("")


def test_corrupt_and_invalid_are_one_error():
    assert v.Corrupt is v.Invalid and issubclass(v.Invalid, ValueError)


@pytest.mark.parametrize("bad", ["run/netns/x", "/run/../etc", "/run/netns/a\nb", "/" + "x" * 4096])
def test_a_recorded_netns_path_is_absolute_printable_and_short(bad):
    assert v.netns_path("/run/netns/cni-1", "netns") == "/run/netns/cni-1"
    with pytest.raises(v.Invalid):
        v.netns_path(bad, "netns")
