"""Parsing of recorded `ip -j` output and the restore lines derived from it."""

import json
import pathlib

from plugin.netinfo import LinkSnapshot, parse_snapshot

DATA = pathlib.Path(__file__).parent.parent / "data"


def snapshot() -> LinkSnapshot:
    return parse_snapshot(json.loads((DATA / "addr_show.json").read_text()),
                          json.loads((DATA / "route_show_table_all.json").read_text()))


def test_link_fields():
    s = snapshot()
    assert (s.name, s.mac, s.mtu, s.up) == ("ens1f0", "be:ee:05:3b:f0:b3", 4200, True)


def test_addresses_skip_link_local_and_keep_flags():
    s = snapshot()
    assert [a.cidr for a in s.addresses] == ["10.20.30.40/24", "192.168.4.8/31", "10.20.31.5/24",
                                            "fd00:20::40/64"]
    v6 = s.addresses[3]
    assert v6.flags == ("nodad",)
    assert s.addresses[1].peer == "192.168.4.9"
    assert s.addresses[0].label == "ens1f0:a"
    assert (s.addresses[2].valid_lft, s.addresses[2].preferred_lft) == (3600, 1800)


def test_routes_families_tables_and_what_is_restorable():
    s = snapshot()
    restorable = [r for r in s.routes if r.restorable]
    assert {(r.family, r.dst, r.table) for r in restorable} == {
        ("inet", "10.77.0.0/16", "100"), ("inet", "default", "main"),
        ("inet", "172.16.9.0/24", "main"), ("inet6", "2001:db8:5::/48", "main"),
        ("inet6", "default", "200")}
    assert all(r.protocol != "kernel" for r in restorable)


def test_default_route_in_main_table_is_detected():
    assert snapshot().carries_default_route
    s = snapshot()
    without = LinkSnapshot(s.name, s.mac, s.mtu, s.up, s.addresses,
                           tuple(r for r in s.routes if not (r.is_default and r.table == "main")))
    assert not without.carries_default_route  # the IPv6 default is in table 200


def test_restore_lines_order_and_content():
    lines = snapshot().restore_lines("net1", current_mac="02:00:00:00:00:01")
    assert lines[:4] == ["link set dev net1 down", "link set dev net1 name ens1f0",
                         "link set dev ens1f0 address be:ee:05:3b:f0:b3",
                         "link set dev ens1f0 mtu 4200"]
    assert "address replace 10.20.30.40/24 dev ens1f0 label ens1f0:a" in lines
    assert "address replace 192.168.4.8 peer 192.168.4.9/31 dev ens1f0" in lines
    assert ("address replace 10.20.31.5/24 dev ens1f0 valid_lft 3600 preferred_lft 1800"
            in lines)
    assert "address replace fd00:20::40/64 dev ens1f0 nodad" in lines
    up = lines.index("link set dev ens1f0 up")
    assert all(lines.index(x) > up for x in lines if x.startswith("route"))
    assert "route replace 0.0.0.0/0 via 10.20.30.1 dev ens1f0 metric 100" in lines
    assert "route replace ::/0 via fd00:20::1 dev ens1f0 table 200 metric 1024" in lines
    assert "route replace 2001:db8:5::/48 via fd00:20::1 dev ens1f0 metric 20" in lines
    assert not any("proto kernel" in x for x in lines)
    assert "route replace 172.16.9.0/24 via 10.99.99.1 dev ens1f0 onlink" in lines
    assert "route replace 10.77.0.0/16 via 10.20.30.1 dev ens1f0 table 100 proto static" in lines


def test_down_link_is_not_brought_up_and_same_name_is_not_renamed():
    s = snapshot()
    down = LinkSnapshot(s.name, s.mac, s.mtu, False, s.addresses, ())
    lines = down.restore_lines("ens1f0", current_mac=s.mac)
    assert [x for x in lines if x.startswith("link")] == ["link set dev ens1f0 mtu 4200"]


def test_snapshot_json_round_trip():
    s = snapshot()
    assert LinkSnapshot.from_json(json.loads(json.dumps(s.to_json()))) == s
