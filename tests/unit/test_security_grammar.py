"""The grammar the trust-boundary property checks `ip` against accepts the plugin's own lines
and nothing else; a checker that accepted anything would prove nothing."""

import json
import pathlib

import pytest

from plugin import dad
from plugin.snapshot import parse_snapshot
from tests.support.grammar import Bad, batch_line, log_line

DATA = pathlib.Path(__file__).parent.parent / "data"


def test_every_restore_line_of_the_recorded_snapshot_parses():
    s = parse_snapshot(json.loads((DATA / "addr_show.json").read_text()),
                       json.loads((DATA / "route_show_table_all.json").read_text()))
    for line in s.restore_lines("net1", "02:00:00:00:00:01"):
        batch_line(line)


@pytest.mark.parametrize("line", [
    "netns exec pod /usr/bin/touch /tmp/x",
    "link set dev ens1f0 up extra",
    "address replace 10.0.0.1/24 dev ens1f0\nnetns exec p true",
    "route replace 10.0.0.0/24 via 10.0.0.1 dev ens1f0",  # no table/proto/scope: not ours
    "link set dev a;b up",
    "link del dev ens1f0",
])
def test_anything_else_is_a_violation(line):
    with pytest.raises(Bad):
        batch_line(line)


def test_argv_forms():
    log_line("A ip -n pod1 -j link show")
    log_line("A ip -j -d -N -batch -")
    log_line("L link set dev net1 alias ens1f0")
    with pytest.raises(Bad):
        log_line("A ip -j -force link show")
    log_line("A nsenter --net=/proc/1/ns/net ip -j link show")
    with pytest.raises(Bad):
        log_line("A ip netns exec x touch y")


D = "/proc/sys/net/ipv6/conf/{}/accept_dad"
OFF = f"A nsenter --net=/run/netns/p sh -c {dad._OFF} sh"
PUT = f"A nsenter --net=/run/netns/p sh -c {dad._PUT} sh"


@pytest.mark.parametrize(("line", "ok"), [
    (f"{OFF} {D.format('default')} {D.format('all')}", True),
    (f"{PUT} 1 {D.format('default')}", True),
    (f"{PUT} 1 {D.format('default')} {D.format('net1')}", True),
    (f"{PUT} 1 {D.format('all')}", False),
    (f"{PUT} 1 {D.format('default')} {D.format('all')}", False),
    (f"{PUT} 1 /etc/passwd", False),
    (f"{PUT} $(reboot) {D.format('default')}", False),
    (f"{OFF} {D.format('net1')} {D.format('all')}", False),
    (f"{OFF} {D.format('default')} /proc/sys/net/ipv6/conf/default/forwarding", False),
    ("A nsenter --net=/run/netns/p sh -c reboot sh", False),
    (f"A sh -c {dad._PUT} sh 1 {D.format('default')}", False)])
def test_only_the_pods_accept_dad_is_read_or_written(line, ok):
    if ok:
        log_line(line)
    else:
        with pytest.raises(Bad):
            log_line(line)


def test_the_link_settings_and_altname_lines_parse():
    s = parse_snapshot(json.loads((DATA / "addr_show.json").read_text()),
                       json.loads((DATA / "route_show_table_all.json").read_text()))
    s = s.with_link(json.loads((DATA / "link_details.json").read_text())[0],
                    (DATA / "ethtool_k.txt").read_text())
    lines = s.restore_lines("ahd0123456789ab", "02:00:00:00:00:01", ("cni0",))
    assert any("property del" in x for x in lines) and any("property add" in x for x in lines)
    assert any(" arp off " in x for x in lines) and any("gso_max_segs" in x for x in lines)
    for line in lines:
        batch_line(line)
    batch_line("link set dev net1 alias ahd0123456789ab")


@pytest.mark.parametrize("line", [
    "link set group 0 down",  # every link of group 0: never without dev
    "link set dev ens1f0 group default",
    "link set dev ens1f0 arp off arp on",
    "link set dev ens1f0 multicast on arp off",  # out of order: not a line we write
    "link set dev ens1f0 promisc maybe",
    "link set dev ens1f0 txqueuelen 1 up",
    "link property add dev ens1f0 altname a altname b",
    "link property set dev ens1f0 altname a",
    "link property del dev ens1f0 altname a#b",
])
def test_settings_lines_we_do_not_write_are_violations(line):
    with pytest.raises(Bad):
        batch_line(line)


def test_the_broadcast_mode_and_xdp_lines_parse():
    from plugin.snapshot import xdp_modes

    s = parse_snapshot(json.loads((DATA / "addr_show.json").read_text()),
                       json.loads((DATA / "route_show_table_all.json").read_text()))
    pod = json.loads((DATA / "link_details_pod_changed.json").read_text())[0]
    s = s.with_link(pod, "", (DATA / "ethtool_l.txt").read_text())
    lines = s.restore_lines("ahd0123456789ab", "02:00:00:00:00:01", (), xdp_modes(pod))
    assert "link set dev ens1f0 broadcast 00:11:22:33:44:55" in lines
    assert "link set dev ens1f0 mode dormant" in lines
    assert "link set dev ens1f0 xdpgeneric off" in lines
    for line in lines:
        batch_line(line)
    for line in ("link set dev ens1f0 mode default", "link set dev ens1f0 xdpdrv off",
                 "link set dev ens1f0 xdpoffload off"):
        batch_line(line)


@pytest.mark.parametrize("line", [
    "link set dev ens1f0 mode testing",
    "link set dev ens1f0 mode",
    "link set dev ens1f0 mode default up",
    "link set dev ens1f0 broadcast 255.255.255.255",
    "link set dev ens1f0 broadcast ff:ff:ff:ff:ff:ff mode default",
    "link set dev ens1f0 xdpgeneric obj /tmp/x.o",
    "link set dev ens1f0 xdpgeneric pinned /sys/fs/bpf/x",
    "link set dev ens1f0 xdp off",  # not a line we write
    "link set dev ens1f0 xdpdrv off xdpgeneric off",
    "link set dev ens1f0 xdpoffload",
])
def test_broadcast_mode_and_xdp_lines_we_do_not_write_are_violations(line):
    with pytest.raises(Bad):
        batch_line(line)
