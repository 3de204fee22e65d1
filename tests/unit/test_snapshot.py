"""Parsing of recorded `ip -j` output and the restore lines derived from it."""

import json
import pathlib

import pytest

from plugin import values as v
from plugin.snapshot import (
    LinkSettings,
    LinkSnapshot,
    RouteEntry,
    parse_channels,
    parse_offloads,
    parse_settings,
    parse_snapshot,
    xdp_modes,
)

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
        ("inet", "10.77.0.0/16", 100), ("inet", "default", 254),
        ("inet", "172.16.9.0/24", 254), ("inet6", "2001:db8:5::/48", 254),
        ("inet6", "default", 200)}
    assert all(r.protocol != 2 for r in restorable)  # kernel


def test_default_route_in_main_table_is_detected():
    assert snapshot().carries_default_route
    s = snapshot()
    without = LinkSnapshot(s.name, s.mac, s.mtu, s.up, s.addresses,
                           tuple(r for r in s.routes if not (r.is_default and r.table == 254)))
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
    # Tables, protocols and scopes as numbers: no /etc/iproute2 names needed to restore them.
    assert ("route replace 0.0.0.0/0 via 10.20.30.1 dev ens1f0 table 254 proto 3 scope 0 "
            "metric 100") in lines
    assert ("route replace ::/0 via fd00:20::1 dev ens1f0 table 200 proto 3 scope 0 metric 1024 "
            "pref medium") in lines
    assert ("route replace 2001:db8:5::/48 via fd00:20::1 dev ens1f0 table 254 proto 3 scope 0 "
            "metric 20 pref medium") in lines
    assert not any("proto 2 " in x for x in lines)  # kernel routes come back by themselves
    assert ("route replace 172.16.9.0/24 via 10.99.99.1 dev ens1f0 table 254 proto 3 scope 0 "
            "onlink") in lines
    assert ("route replace 10.77.0.0/16 via 10.20.30.1 dev ens1f0 table 100 proto 4 "
            "scope 0") in lines


def test_down_link_is_not_brought_up_and_same_name_is_not_renamed():
    s = snapshot()
    down = LinkSnapshot(s.name, s.mac, s.mtu, False, s.addresses, ())
    lines = down.restore_lines("ens1f0", current_mac=s.mac)
    assert [x for x in lines if x.startswith("link")] == ["link set dev ens1f0 mtu 4200"]


def test_snapshot_json_round_trip():
    s = snapshot()
    assert LinkSnapshot.from_json(json.loads(json.dumps(s.to_json()))) == s


def test_rfc5549_numeric_tables_metrics_and_pref_are_captured_and_restored():
    # As `ip -j -N route show table all dev X` prints them.
    routes = [{"dst": "10.250.0.0/24", "via": {"family": "inet6", "host": "fe80::1"},
               "flags": []},
              {"dst": "10.251.0.0/24", "gateway": "10.9.0.1", "table": "100", "protocol": "77",
               "prefsrc": "10.9.0.2", "metric": 5, "flags": [],
               "metrics": [{"mtu": 1400, "advmss": 1300}]},
              {"dst": "fd01::/64", "gateway": "fd00::1", "metric": 1024, "flags": [],
               "pref": "high"},
              {"type": "2", "dst": "10.9.0.2", "table": "255", "protocol": "2", "scope": "254",
               "flags": []}]
    s = parse_snapshot([{"ifname": "ens1f0", "address": "02:00:00:00:00:01", "mtu": 1500,
                         "flags": ["UP"], "addr_info": []}], routes)
    lines = [x for x in s.restore_lines("ens1f0") if x.startswith("route")]
    assert lines == [
        "route replace 10.250.0.0/24 via inet6 fe80::1 dev ens1f0 table 254 proto 3 scope 0",
        "route replace 10.251.0.0/24 via 10.9.0.1 dev ens1f0 table 100 proto 77 scope 0 "
        "metric 5 src 10.9.0.2 mtu 1400 advmss 1300",
        "route replace fd01::/64 via fd00::1 dev ens1f0 table 254 proto 3 scope 0 metric 1024 "
        "pref high"]
    assert LinkSnapshot.from_json(json.loads(json.dumps(s.to_json()))) == s


def test_records_from_before_numbers_still_load():
    old = {"family": "inet", "dst": "10.77.0.0/16", "gateway": "10.20.30.1", "table": "main",
           "protocol": "static", "scope": "", "metric": None, "prefsrc": "", "type": "unicast",
           "onlink": False, "mtu": 0}
    r = RouteEntry.from_json(old)
    assert (r.table, r.protocol, r.scope) == (254, 4, 0)


# -- what a pod can change on the link and that travels with it (red-team rows 9-11) -------

def details() -> dict:
    return json.loads((DATA / "link_details.json").read_text())[0]


def with_link() -> LinkSnapshot:
    return snapshot().with_link(details(), (DATA / "ethtool_k.txt").read_text())


def test_link_settings_are_read_from_ip_details_and_ethtool():
    s = with_link().settings
    assert (s.arp, s.multicast, s.allmulticast, s.promisc) == (False, True, False, False)
    assert (s.txqueuelen, s.group) == (500, 7)
    assert (s.gso_max_size, s.gso_max_segs, s.gro_max_size) == (65536, 65535, 65536)
    offloads = dict(s.offloads)
    assert offloads["tx-tcp-segmentation"] is True  # "off [requested on]": what was wanted
    assert offloads["tx-checksum-ip-generic"] is False
    assert offloads["rx-checksumming"] is True and offloads["generic-receive-offload"] is False
    assert "large-receive-offload" not in offloads  # [fixed]: nothing to put back
    assert "tx-checksumming" not in offloads  # an aggregate: its children say it
    assert with_link().altnames == ("enp1s0f0",)


def test_link_settings_restore_lines_and_ethtool_words():
    s = with_link()
    lines = s.restore_lines("ahd0123456789ab", "02:00:00:00:00:01", ("enp1s0f0", "cni0"))
    flags = lines.index("link set dev ens1f0 arp off multicast on allmulticast off promisc off")
    assert flags < lines.index("link set dev ens1f0 up")  # NOARP decides neighbour states
    assert "link set dev ens1f0 txqueuelen 500" in lines
    assert "link set dev ens1f0 group 7" in lines
    tail = lines[lines.index("link property del dev ens1f0 altname cni0"):]
    assert tail == ["link property del dev ens1f0 altname cni0",
                    "link set dev ens1f0 gso_max_size 65536",
                    "link set dev ens1f0 gso_max_segs 65535",
                    "link set dev ens1f0 gro_max_size 65536"]
    words = s.settings.ethtool_words()
    assert words[:2] == ["rx-checksumming", "on"] and len(words) % 2 == 0
    assert "tx-checksumming" not in words and "large-receive-offload" not in words


def test_the_node_altnames_come_back_and_only_they():
    s = with_link()
    lines = s.restore_lines("ens1f0", s.mac, ())
    assert "link property add dev ens1f0 altname enp1s0f0" in lines
    assert not [x for x in lines if "property del" in x]
    assert not [x for x in s.restore_lines("ens1f0", s.mac, ("enp1s0f0",)) if "property" in x]
    assert s.stray_altnames(("enp1s0f0", "a#b", "cni0")) == ["a#b", "cni0"]
    with pytest.raises(v.Corrupt):  # the caller drops it with argv words first
        s.restore_lines("ens1f0", s.mac, ("a#b",))


def test_records_from_before_link_settings_load_and_restore_nothing_new():
    s = with_link()
    old = s.to_json()
    del old["altnames"], old["settings"]
    loaded = LinkSnapshot.from_json(json.loads(json.dumps(old)))
    assert loaded.altnames is None and loaded.settings == LinkSettings()
    assert loaded.restore_lines("ens1f0", s.mac, ("enp1s0f0", "cni0")) == \
        snapshot().restore_lines("ens1f0", s.mac)  # altnames not recorded: left alone
    assert loaded.settings.ethtool_words() == []


def test_link_settings_round_trip():
    s = with_link()
    assert LinkSnapshot.from_json(json.loads(json.dumps(s.to_json()))) == s


@pytest.mark.parametrize("change", [
    lambda o: o["settings"].update(txqueuelen="1\nnetns exec x touch y"),
    lambda o: o["settings"].update(group=-1),
    lambda o: o["settings"].update(arp="off"),
    lambda o: o["settings"].update(gso_max_segs=70000),
    lambda o: o["settings"].update(surprise=1),
    lambda o: o["settings"].update(offloads=[["tx off; rm", True]]),
    lambda o: o["settings"].update(offloads=[["rx-checksumming", "on"]]),
    lambda o: o["settings"].update(offloads=[["rx-checksumming"]]),
    lambda o: o.update(altnames=["cni0 up\nnetns exec x true"]),
    lambda o: o.update(altnames=["a" * 128]),
    lambda o: o.update(altnames="enp1s0f0"),
])
def test_hostile_link_settings_are_corrupt(change):
    obj = json.loads(json.dumps(with_link().to_json()))
    change(obj)
    with pytest.raises(v.Corrupt):
        LinkSnapshot.from_json(obj)


def test_settings_ip_did_not_report_are_not_recorded():
    s = parse_settings({"ifname": "x", "group": "cluster-net", "txqlen": -1}, "")
    assert s == LinkSettings()
    assert parse_settings(None, "").offloads == ()
    assert parse_offloads("Features for x:\nrx-checksumming: on\n") == (("rx-checksumming", True),)


# -- what a pod can leave on the netdev besides flags and offloads -------------------------
# link_details_pod_changed.json: a veth after `ip link set mode dormant broadcast
# 00:11:22:33:44:55`, `ethtool -L rx 2 tx 1` and an XDP program attached in generic mode;
# ethtool_l.txt: its `ethtool -l`.

def pod_changed() -> dict:
    return json.loads((DATA / "link_details_pod_changed.json").read_text())[0]


def test_broadcast_and_link_mode_are_recorded():
    s = with_link().settings
    assert (s.broadcast, s.linkmode) == ("ff:ff:ff:ff:ff:ff", "default")
    changed = parse_settings(pod_changed())
    assert (changed.broadcast, changed.linkmode) == ("00:11:22:33:44:55", "dormant")


def test_broadcast_and_link_mode_come_back_before_addresses_and_up():
    lines = with_link().restore_lines("ahd0123456789ab", "02:00:00:00:00:01")
    broadcast = lines.index("link set dev ens1f0 broadcast ff:ff:ff:ff:ff:ff")
    mode = lines.index("link set dev ens1f0 mode default")
    first_address = next(i for i, x in enumerate(lines) if x.startswith("address "))
    assert lines.index("link set dev ahd0123456789ab name ens1f0") < broadcast
    assert max(broadcast, mode) < first_address < lines.index("link set dev ens1f0 up")


def test_a_link_mode_ip_cannot_set_back_and_a_bad_broadcast_are_not_recorded():
    link = dict(pod_changed(), linkmode="TESTING", broadcast="00:11")
    s = parse_settings(link)
    assert (s.broadcast, s.linkmode) == ("", None)
    assert not [x for x in s.early_lines("ens1f0") if " broadcast " in x or " mode " in x]


def test_xdp_attachments_are_read_per_mode():
    assert xdp_modes(pod_changed()) == ("xdpgeneric",)
    assert xdp_modes(details()) == ()
    drv = dict(pod_changed(), xdp=dict(pod_changed()["xdp"], mode=1))
    assert xdp_modes(drv) == ("xdpdrv",)
    # XDP_ATTACHED_MULTI (driver and offload at once; veths cannot, so built from the above)
    multi = dict(pod_changed(), xdp={"mode": 4, "attached": [{"mode": 3}, {"mode": 1}]})
    assert xdp_modes(multi) == ("xdpdrv", "xdpoffload")
    for odd in ({"mode": 4}, {"mode": 4, "attached": "x"}, {"mode": 9}, "xdp", None):
        assert xdp_modes(dict(pod_changed(), xdp=odd)) == ()


def test_xdp_is_detached_right_after_the_rename():
    s = with_link()
    lines = s.restore_lines("ahd0123456789ab", "02:00:00:00:00:01", (),
                            xdp_modes(pod_changed()))
    assert lines[:3] == ["link set dev ahd0123456789ab down",
                         "link set dev ahd0123456789ab name ens1f0",
                         "link set dev ens1f0 xdpgeneric off"]
    assert not [x for x in s.restore_lines("ens1f0", s.mac) if "xdp" in x]
    home = s.restore_lines("ens1f0", s.mac, (), ("xdpdrv", "xdpoffload"))
    assert home[:2] == ["link set dev ens1f0 xdpdrv off", "link set dev ens1f0 xdpoffload off"]
    with pytest.raises(v.Corrupt):
        s.restore_lines("ens1f0", s.mac, (), ("xdp obj /tmp/x.o",))


def test_channels_are_read_from_ethtool_and_put_back_in_one_call():
    text = (DATA / "ethtool_l.txt").read_text()
    assert parse_channels(text) == (("rx", 2), ("tx", 1))  # other, combined: n/a
    s = snapshot().with_link(details(), "", text).settings
    assert s.channel_words() == ["rx", "2", "tx", "1"]
    assert with_link().settings.channel_words() == []  # no `ethtool -l`: nothing to set


def test_channels_the_nic_does_not_support_are_not_recorded():
    combined = ("Channel parameters for eth0:\nPre-set maximums:\nRX:\t\tn/a\nTX:\t\tn/a\n"
                "Other:\t\t1\nCombined:\t63\nCurrent hardware settings:\nRX:\t\tn/a\n"
                "TX:\t\tn/a\nOther:\t\t1\nCombined:\t8\n")
    assert parse_channels(combined) == (("other", 1), ("combined", 8))
    zero_max = combined.replace("Other:\t\t1\nCombined:\t63", "Other:\t\t0\nCombined:\t63")
    assert parse_channels(zero_max) == (("combined", 8),)
    assert parse_channels("") == () and parse_channels("RX: 2\nTX: 2\n") == ()
    assert parse_channels("Current hardware settings:\nRX:\t\t2\n") == ()  # no maximum


def test_new_link_settings_round_trip_and_older_settings_still_load():
    s = snapshot().with_link(pod_changed(), "", (DATA / "ethtool_l.txt").read_text())
    assert LinkSnapshot.from_json(json.loads(json.dumps(s.to_json()))) == s
    old = json.loads(json.dumps(with_link().to_json()))
    for key in ("broadcast", "linkmode", "channels"):
        del old["settings"][key]
    loaded = LinkSnapshot.from_json(old)
    assert (loaded.settings.broadcast, loaded.settings.linkmode) == ("", None)
    assert loaded.settings.channel_words() == []
    assert not [x for x in loaded.restore_lines("ens1f0", loaded.mac)
                if " broadcast " in x or " mode " in x]


@pytest.mark.parametrize("change", [
    lambda o: o["settings"].update(broadcast="ff:ff:ff:ff:ff:ff\nnetns exec x touch y"),
    lambda o: o["settings"].update(broadcast="255.255.255.255"),
    lambda o: o["settings"].update(broadcast=None),
    lambda o: o["settings"].update(linkmode="testing"),
    lambda o: o["settings"].update(linkmode="DORMANT"),
    lambda o: o["settings"].update(linkmode=True),
    lambda o: o["settings"].update(channels=[["rx", -1]]),
    lambda o: o["settings"].update(channels=[["rx", 1], ["rx", 2]]),
    lambda o: o["settings"].update(channels=[["queues", 1]]),
    lambda o: o["settings"].update(channels=[["rx", "1; reboot"]]),
    lambda o: o["settings"].update(channels=[["rx"]]),
    lambda o: o["settings"].update(channels={"rx": 1}),
])
def test_hostile_new_link_settings_are_corrupt(change):
    s = snapshot().with_link(pod_changed(), "", (DATA / "ethtool_l.txt").read_text())
    obj = json.loads(json.dumps(s.to_json()))
    change(obj)
    with pytest.raises(v.Corrupt):
        LinkSnapshot.from_json(obj)


def test_restore_sets_only_the_offloads_and_channels_that_differ_from_what_came_home():
    text_k = (DATA / "ethtool_k.txt").read_text()
    text_l = (DATA / "ethtool_l.txt").read_text()
    s = snapshot().with_link(details(), text_k, text_l).settings
    same_k, same_l = parse_offloads(text_k), parse_channels(text_l)
    assert s.ethtool_words(same_k) == [] and s.channel_words(same_l) == []  # nothing changed
    flipped = tuple((name, not on) if name == "rx-checksumming" else (name, on)
                    for name, on in same_k)
    assert s.ethtool_words(flipped) == ["rx-checksumming", "on"]
    assert s.channel_words((("rx", 4), ("tx", 1))) == ["rx", "2"]
    missing = tuple(x for x in same_k if x[0] != "tx-tcp-segmentation")
    assert s.ethtool_words(missing) == ["tx-tcp-segmentation", "on"]
    # nothing known about what came home: every recorded value is set, as before
    assert s.ethtool_words(None) == s.ethtool_words() and len(s.ethtool_words()) > 2
    assert s.channel_words(None) == ["rx", "2", "tx", "1"]


def test_altnames_no_batch_line_may_carry_are_recorded_as_not_restorable():
    """A NIC that came home with a leftover a pod added by raw netlink is still taken."""
    link = dict(details(), altnames=["enp1s0f0", "x y", "x\ny", "\udcff", "a#b"])
    s = snapshot().with_link(link)
    assert s.altnames == ("enp1s0f0",)
    assert s.not_restorable == ("x y", "x\ny", "\udcff", "a#b")
    back = LinkSnapshot.from_json(json.loads(json.dumps(s.to_json())))
    assert back == s
    assert "x y" not in " ".join(back.restore_lines("ens1f0", "", ("enp1s0f0",)))


def test_a_record_without_not_restorable_reads_back_and_bad_ones_are_corrupt():
    obj = json.loads(json.dumps(with_link().to_json()))
    del obj["not_restorable"]
    assert LinkSnapshot.from_json(obj).not_restorable == ()
    for bad in (["x\0y"], [""], ["x" * 128], [5], "x y", ["a"] * 65):
        with pytest.raises(ValueError):
            LinkSnapshot.from_json({**obj, "not_restorable": bad})
