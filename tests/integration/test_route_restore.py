"""Route restore that never wedges a pod (issue 11, item 4): RFC 5549 next hops, tables named
only in the capturing side's /etc/iproute2, onlink, src, metrics, MTU, IPv6 pref; a line ip
cannot parse costs that line only. Real ip, host-device, namespaces."""

import os
import shutil
import subprocess

from tests.support.checks import NODE_TOOLS
from tests.support.simnode import sh


def ok(call):
    assert call.rc == 0, f"rc={call.rc} stdout={call.stdout} stderr={call.stderr}"
    return call.json


def routes(node, nic, *family):
    got = node.ip_json(node.node, *family, "route", "show", "table", "all", "dev", nic.name)
    return sorted((r.get("dst"), r.get("gateway") or (r.get("via") or {}).get("host", ""),
                   r.get("table", "main"), r.get("metric", 0), r.get("protocol", ""),
                   tuple(r.get("flags", [])), r.get("prefsrc", ""), r.get("pref", ""),
                   str(r.get("metrics", "")))
                  for r in got or [] if r.get("protocol") != "kernel" and "type" not in r)


def add_routes(node, nic):
    n = node.node
    sh("ip", "-n", n, "route", "add", "10.250.0.0/24", "via", "inet6", "fe80::1", "dev", nic.name)
    sh("ip", "-n", n, "route", "add", "10.251.0.0/24", "via", nic.peer_v4, "dev", nic.name,
       "table", "100", "proto", "77", "metric", "5", "mtu", "1400", "advmss", "1300", "src",
       nic.v4.split("/")[0])
    sh("ip", "-n", n, "route", "add", "10.252.0.0/24", "via", "10.9.9.9", "dev", nic.name,
       "onlink")
    sh("ip", "-n", n, "-6", "route", "add", "fd01::/64", "via", nic.peer_v6, "dev", nic.name,
       "pref", "high")


def test_rfc5549_and_friends_survive_add_del(node, pod):
    """Row 5(a): the old restore failed DEL with code 999 every time, and lost the routes
    after the `via inet6` line."""
    nic = node.nics[0]
    add_routes(node, nic)
    before = routes(node, nic), routes(node, nic, "-6")
    assert any(r[0] == "10.250.0.0/24" for r in before[0])
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    assert node.link(node.node, nic.name) is None
    call = node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1")
    ok(call)
    assert (routes(node, nic), routes(node, nic, "-6")) == before


def test_a_line_ip_cannot_parse_costs_that_line_only(node, pod, tmp_path):
    """An `ip` that cannot parse `via inet6` (as older iproute2): ip -batch stops there; the
    lines after it are still applied one by one, the failed one is logged, DEL succeeds."""
    nic = node.nics[0]
    add_routes(node, nic)
    before = routes(node, nic, "-6")
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    d = tmp_path / "bin"
    d.mkdir()
    real = shutil.which("ip")
    (d / "ip").write_text(f"""#!/bin/sh
case " $* " in
  *" -batch "*)
    t=$(mktemp); sed 's/via inet6 /via bogus6 /' > "$t"
    {real} "$@" < "$t"; rc=$?; rm -f "$t"; exit $rc;;
esac
exec {real} "$@"
""")
    (d / "ip").chmod(0o755)
    call = node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1",
                    extra_env={"PATH": f"{d}:{os.environ['PATH']}", **NODE_TOOLS})
    ok(call)
    assert "10.250.0.0/24" in call.stderr and "restore step failed" in call.stderr
    assert routes(node, nic, "-6") == before  # IPv6 routes come after the failed line
    assert any(r[0] == "10.252.0.0/24" for r in routes(node, nic))
    assert node.addresses(node.node, nic.name) == {nic.v4, nic.v6}


def test_reconcile_restores_a_table_named_only_where_add_ran(node, tmp_path):
    """Row 5(b): ADD ran where /etc/iproute2/rt_tables names table 100 `fabric`; reconcile runs
    in a container without that name."""
    nic = node.nics[0]
    pod = node.add_pod()
    sh("ip", "-n", node.node, "route", "add", "10.251.0.0/24", "via", nic.peer_v4, "dev",
       nic.name, "table", "100")
    before = routes(node, nic)
    conf_dir = tmp_path / "iproute2"
    shutil.copytree("/etc/iproute2", conf_dir)
    with open(conf_dir / "rt_tables", "a") as f:
        f.write("100\tfabric\n")
    wrapper = tmp_path / "plugin-with-fabric"
    wrapper.write_text(f"""#!/bin/sh
exec unshare -m --propagation private sh -c 'mount --bind {conf_dir} /etc/iproute2 && exec {node.plugin}'
""")
    wrapper.chmod(0o755)
    ok(node.cni("ADD", node.conf(nic.pci), "dead", node.netns_path(pod), "net1",
                plugin=str(wrapper)))
    sh("ip", "-n", pod, "link", "set", "net1", "netns", node.node)  # home as net1
    node.remove_pod(pod)
    node.sync_sysfs()
    out = subprocess.run(["ip", "netns", "exec", node.node, node.plugin, "reconcile",
                          "--state-dir", node.state_dir, "--interval", "0"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert routes(node, nic) == before
    assert node.addresses(node.node, nic.name) == {nic.v4, nic.v6}
