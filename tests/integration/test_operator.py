"""What an admin runs on a node: `list` while pods come and go, `doctor` on a node that is
ready and on nodes built to fail each check, and the log lines they read."""

import json
import os
import shutil
import socket
import stat
import threading

import pytest

from tests.support.checks import NODE_TOOLS

ARGS = "IgnoreUnknown=1;K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=web-0;K8S_POD_UID=u1"


def ok(call):
    assert call.rc == 0, f"rc={call.rc} stdout={call.stdout} stderr={call.stderr}"
    return call


def listing(node, **env):
    call = ok(node.run("list", "--json", extra_env=env))
    return json.loads(call.stdout)


def add(node, nic, cid, pod, ifname="net1", args=ARGS):
    return node.cni("ADD", node.conf(nic.pci), cid, pod, ifname, extra_env={"CNI_ARGS": args})


# -- list ----------------------------------------------------------------------------------------
def test_list_on_an_empty_node(node):
    assert listing(node)["attachments"] == []
    table = ok(node.run("list")).stdout
    assert table.splitlines()[0].startswith("Attachments (state dir ") and "none" in table
    assert not os.path.exists(node.state_dir)   # list created nothing


def test_list_while_the_pod_runs(node, pod):
    a, b = node.nics
    ok(add(node, a, "0123456789abcdef0123", pod, "net1"))
    ok(add(node, b, "0123456789abcdef0123", pod, "net2"))
    rows = listing(node)["attachments"]
    assert [(r["pod"], r["ifname"], r["pciAddress"], r["netdev"], r["phase"], r["orphaned"])
            for r in rows] == [("team-a/web-0", "net1", a.pci, a.name, "attached", False),
                               ("team-a/web-0", "net2", b.pci, b.name, "attached", False)]
    assert set(rows[0]["addresses"]) == {a.v4, a.v6}
    table = ok(node.run("list")).stdout.splitlines()
    assert table[2].split()[:5] == ["team-a/web-0", "0123456789ab", "net1", a.pci, a.name]
    ok(node.cni("DEL", node.conf(b.pci), "0123456789abcdef0123", pod, "net2"))
    ok(node.cni("DEL", node.conf(a.pci), "0123456789abcdef0123", pod, "net1"))
    assert listing(node)["attachments"] == []


def test_list_during_a_concurrent_add(node, pod):
    """Every list during an ADD answers, sees whole records only, and changes nothing."""
    nic = node.nics[0]
    done = threading.Event()
    result = {}

    def run_add():
        result["add"] = add(node, nic, "c1", pod)
        done.set()

    t = threading.Thread(target=run_add)
    t.start()
    seen = []
    try:
        while not done.is_set() or not seen:
            got = listing(node)
            assert got["corrupt"] == []
            seen += [r["phase"] for r in got["attachments"]]
    finally:
        t.join()
    ok(result["add"])
    assert set(seen) <= {"moving", "attached"}
    (row,) = listing(node)["attachments"]
    assert row["phase"] == "attached" and not row["busy"]
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))


def test_list_shows_an_orphan_after_the_pod_died_without_del(node):
    nic = node.nics[0]
    name = node.add_pod()
    ok(add(node, nic, "c1", node.netns_path(name)))
    node.remove_pod(name)           # the node "crashed": the pod's netns is gone, no DEL
    (row,) = listing(node)["attachments"]
    assert row["orphaned"] and not row["netnsAlive"] and row["orphanedSince"] is None
    assert "pod netns gone" in ok(node.run("list")).stdout
    ok(node.cni("DEL", node.conf(nic.pci), "c1", node.netns_path(name), "net1"))
    (row,) = listing(node)["attachments"]   # the veth died with the netns: kept as orphan
    assert row["orphaned"] and row["orphanedSince"]
    assert "since " in ok(node.run("list")).stdout


def test_list_shows_who_holds_a_nic_another_pod_asks_for(node, pod):
    nic = node.nics[0]
    ok(add(node, nic, "c1", pod))
    other = node.netns_path(node.add_pod())
    bad = add(node, nic, "c2", other, args="IgnoreUnknown=1;K8S_POD_NAMESPACE=b;K8S_POD_NAME=x")
    assert bad.json["code"] == 103
    (row,) = listing(node)["attachments"]
    assert row["containerID"] == "c1" and row["pod"] == "team-a/web-0"
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))


# -- logs ----------------------------------------------------------------------------------------
def test_log_lines_carry_the_pod_and_go_to_the_policy_log_file(node, pod, tmp_path):
    nic = node.nics[0]
    path = tmp_path / "ahd.log"
    node.write_policy(logFile=str(path))
    call = ok(add(node, nic, "c1", pod))
    err = [x for x in call.stderr.splitlines() if x.startswith("ts=")]
    assert err and all(" pod=team-a/web-0 container=c1 ifname=net1 " in x for x in err)
    assert all(" msg=" in x and " level=" in x for x in err)
    assert path.read_text().splitlines() == err
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))


@pytest.mark.parametrize("kind", ["symlink", "fifo"])
def test_list_reports_a_legacy_mappings_file_that_is_not_regular_and_leaves_it(node, tmp_path,
                                                                            kind):
    """Read through state.read_regular (no symlink followed, no FIFO blocked on): listed as
    corrupt, never set aside (list is read-only)."""
    for sub in ("", "attachments", "devices", "locks"):
        os.makedirs(os.path.join(node.state_dir, sub), mode=0o700, exist_ok=True)
    path = os.path.join(node.state_dir, "ip-interface-mappings.json")
    if kind == "symlink":
        (tmp_path / "m.json").write_text("{}")
        os.symlink(tmp_path / "m.json", path)
    else:
        os.mkfifo(path)
    before = sorted(os.listdir(node.state_dir))
    call = node.run("list", "--json", timeout=60)
    assert call.rc in (0, 1) and "Traceback" not in call.stderr, call.stderr
    got = json.loads(call.stdout)
    assert got["legacy"] == []
    (bad,) = [c for c in got["corrupt"] if c["path"] == path]
    assert "not a regular file" in bad["reason"] and bad["setAside"] is False
    assert sorted(os.listdir(node.state_dir)) == before   # nothing set aside or created
    assert os.path.islink(path) if kind == "symlink" else stat.S_ISFIFO(os.lstat(path).st_mode)


# -- doctor --------------------------------------------------------------------------------------
@pytest.fixture
def ready(node, tmp_path):
    """A node doctor passes: policy written, a CNI config naming us at 1.0.0, a daemon that
    answers on the policy's socket."""
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    (conf_dir / "10-ahd.conflist").write_text(json.dumps(
        {"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "amd-host-device"}]}))
    node.write_policy(socket=node.socket)
    node.start_daemon()
    env = {"AMD_HOST_DEVICE_CNI_CONF_DIR": str(conf_dir)}
    try:
        yield env
    finally:
        node.stop_daemon()


def doctor(node, env, *args):
    call = node.run("doctor", "--json", *args, extra_env=env)
    report = json.loads(call.stdout)
    assert call.rc == (0 if report["ok"] else 1), call.stderr
    return call.rc, {c["name"]: c for c in report["checks"]}


def failed(node, env, name, *args):
    rc, checks = doctor(node, env, *args)
    assert rc == 1 and checks[name]["status"] == "fail", checks[name]
    assert checks[name]["fix"]
    return checks[name]


def bin_dir(tmp_path, *tools, fakes=None):
    """A PATH holding only these tools (and fake scripts): a node missing the rest. coreutils'
    `timeout` is always there (the plugin bounds every command with it)."""
    d = tmp_path / "bin"
    d.mkdir(exist_ok=True)
    for tool in ("timeout", *tools):
        (d / tool).symlink_to(shutil.which(tool))
    for name, body in (fakes or {}).items():
        (d / name).write_text("#!/bin/sh\n" + body)
        (d / name).chmod(0o755)
    return str(d)


def test_doctor_passes_on_the_simulated_node(node, ready):
    rc, checks = doctor(node, ready)
    assert rc == 0, checks
    assert [n for n, c in checks.items() if c["status"] != "pass"] == []
    assert list(checks) == ["ip-json", "ethtool", "nsenter", "sh", "host-device", "state-dir",
                            "node-policy", "daemon", "pci-nics", "cni-configs"]
    # which copy runs: the node's from the venv; the bundle's own when installed (test-installed)
    copy = "(bundled /" if os.environ.get("AMD_HOST_DEVICE_PLUGIN") else "(node /"
    for tool in ("ip-json", "ethtool", "nsenter", "sh"):
        assert copy in checks[tool]["summary"], checks[tool]
    nics = checks["pci-nics"]["details"]
    assert any(n.pci in x and n.name in x and "[AMD]" in x and "ionic" in x and n.v4 in x
               for n in node.nics for x in nics)
    assert "1.0.0" in checks["host-device"]["summary"]
    assert checks["cni-configs"]["details"] == ["10-ahd.conflist: cniVersion 1.0.0"]
    text = node.run("doctor", extra_env=ready)
    assert text.rc == 0 and text.stdout.count("✓") == 10 and "✗" not in text.stdout


def test_doctor_table_marks_a_failure_with_its_fix(node, ready, tmp_path):
    env = {**ready, **NODE_TOOLS, "PATH": bin_dir(tmp_path, "ip", "ethtool")}
    text = node.run("doctor", extra_env=env)
    assert text.rc == 1
    lines = text.stdout.splitlines()
    i = next(n for n, x in enumerate(lines) if x.startswith("✗ nsenter"))
    assert lines[i + 1].strip().startswith("fix: install util-linux")
    assert lines[-1] == "1 check(s) failed"


def test_doctor_ip_missing(node, ready, tmp_path):
    failed(node, {**ready, **NODE_TOOLS, "PATH": bin_dir(tmp_path, "nsenter")}, "ip-json")


def test_doctor_ip_without_json(node, ready, tmp_path):
    old_ip = ('case " $* " in *" -j "*) echo \'Option "-j" is unknown, try "ip -help".\' >&2; '
              f'exit 255;; esac\nexec {shutil.which("ip")} "$@"\n')
    check = failed(node, {**ready, **NODE_TOOLS, "PATH": bin_dir(tmp_path, "nsenter", fakes={"ip": old_ip})},
                   "ip-json")
    assert "4.13" in check["fix"]


def test_doctor_ethtool_missing(node, ready, tmp_path):
    """Without ethtool, offloads and channels a pod changed come home silently: not ready."""
    check = failed(node, {**ready, **NODE_TOOLS, "PATH": bin_dir(tmp_path, "ip", "nsenter")}, "ethtool")
    assert check["summary"].startswith("ethtool (node: ethtool not found on PATH): not found")
    assert "install ethtool" in check["fix"]


def test_doctor_tools_checks_only_the_tools(node, ready):
    rc, checks = doctor(node, ready, "--tools")
    assert rc == 0 and list(checks) == ["ip-json", "ethtool", "nsenter", "sh"]


def test_doctor_nsenter_missing(node, ready, tmp_path):
    failed(node, {**ready, **NODE_TOOLS, "PATH": bin_dir(tmp_path, "ip")}, "nsenter")


def test_doctor_host_device_missing(node, ready):
    check = failed(node, {**ready, "AMD_HOST_DEVICE_FALLBACK_DIRS": ""}, "host-device")
    assert "not found" in check["summary"]


def test_doctor_host_device_speaks_none_of_our_versions(node, ready, tmp_path):
    cni = tmp_path / "cni"
    cni.mkdir()
    (cni / "host-device").write_text(
        "#!/bin/sh\necho '{\"cniVersion\":\"0.2.0\",\"supportedVersions\":[\"0.1.0\",\"0.2.0\"]}'\n")
    (cni / "host-device").chmod(0o755)
    check = failed(node, {**ready, "AMD_HOST_DEVICE_FALLBACK_DIRS": ""}, "host-device",
                   "--cni-path", str(cni))
    assert "none of ours" in check["summary"]


@pytest.mark.parametrize("how", ["mode", "symlink"])
def test_doctor_state_dir(node, ready, tmp_path, how):
    if how == "mode":
        os.makedirs(node.state_dir)
        os.chmod(node.state_dir, 0o755)
    else:
        real = tmp_path / "elsewhere"
        real.mkdir(mode=0o700)
        os.symlink(real, node.state_dir)
    check = failed(node, ready, "state-dir")
    assert ("0755" if how == "mode" else "not a directory") in check["summary"]


def test_doctor_node_policy_absent(node, ready):
    os.unlink(node.policy_path)
    assert "absent" in failed(node, ready, "node-policy")["summary"]


def test_doctor_node_policy_invalid(node, ready):
    node.write_policy(stateDri="/tmp/typo")
    assert "unknown key 'stateDri'" in failed(node, ready, "node-policy")["summary"]


def test_doctor_node_policy_writable_by_others(node, ready):
    os.chmod(node.policy_path, 0o666)
    assert "writable" in failed(node, ready, "node-policy")["summary"]


def test_doctor_daemon_expected_but_absent(node, ready, tmp_path):
    nobody = str(tmp_path / "nobody-home.sock")
    node.write_policy(socket=nobody)
    env = {**ready, "AMD_HOST_DEVICE_SOCKET": nobody}
    assert "no socket" in failed(node, env, "daemon")["summary"]


def test_doctor_daemon_stale_socket(node, ready, tmp_path):
    stale = str(tmp_path / "stale.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(stale)
    s.close()                    # the file stays, nobody listens: a daemon that died
    node.write_policy(socket=stale)
    env = {**ready, "AMD_HOST_DEVICE_SOCKET": stale}
    assert "does not answer" in failed(node, env, "daemon")["summary"]


def test_doctor_daemon_absent_in_process_mode_is_not_a_failure(node, ready, tmp_path):
    from plugin import policy

    assert not os.path.exists(policy.DEFAULT_SOCKET), "a daemon socket was left on this machine"
    node.write_policy()          # no socket named: the node runs the plugin in process
    env = {**ready, "AMD_HOST_DEVICE_SOCKET": str(tmp_path / "none.sock")}
    rc, checks = doctor(node, env)
    assert rc == 0 and checks["daemon"]["status"] == "info"
    assert "in-process mode" in checks["daemon"]["summary"]


def test_doctor_no_pci_nics(node, ready, tmp_path):
    empty = tmp_path / "sys"
    empty.mkdir()
    failed(node, {**ready, "AMD_HOST_DEVICE_SYSFS": str(empty)}, "pci-nics")


def test_doctor_flags_a_nic_that_carries_the_default_route(node, ready):
    nic = node.nics[0]
    node_ns = node.node
    from tests.support.simnode import sh

    sh("ip", "-n", node_ns, "route", "add", "default", "via", nic.peer_v4, "dev", nic.name)
    _, checks = doctor(node, ready)
    (line,) = [x for x in checks["pci-nics"]["details"] if nic.name in x]
    assert "default route" in line and "allowDefaultRouteDevice" in line
    (other,) = [x for x in checks["pci-nics"]["details"] if node.nics[1].name in x]
    assert "default route" not in other


@pytest.mark.parametrize("conf,why", [
    ({"cniVersion": "1.1.0", "name": "n", "type": "amd-host-device"}, "parses results only up to 1.0.0"),
    ({"cniVersion": "0.2.0", "name": "n", "plugins": [{"type": "amd-host-device"}]}, "not one we speak"),
    ('{"type": "amd-host-device", ', "not valid JSON"),
])
def test_doctor_cni_config_versions(node, ready, tmp_path, conf, why):
    conf_dir = tmp_path / "bad.d"
    conf_dir.mkdir()
    (conf_dir / "20-ahd.conf").write_text(conf if isinstance(conf, str) else json.dumps(conf))
    old = "echo 'containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3'\n"
    env = {**ready, "AMD_HOST_DEVICE_CNI_CONF_DIR": str(conf_dir),
           **NODE_TOOLS, "PATH": bin_dir(tmp_path, "ip", "nsenter", fakes={"containerd": old})}
    assert why in failed(node, env, "cni-configs")["summary"]


def test_doctor_accepts_1_1_0_where_the_runtime_parses_it(node, ready, tmp_path):
    conf_dir = tmp_path / "new.d"
    conf_dir.mkdir()
    (conf_dir / "20-ahd.conf").write_text(json.dumps(
        {"cniVersion": "1.1.0", "name": "n", "type": "amd-host-device"}))
    new = ("echo 'containerd github.com/containerd/containerd/v2 v2.0.2 "
           "c507a0257ea6462fbd6f5ba4f5c74facb04021f4'\n")
    env = {**ready, "AMD_HOST_DEVICE_CNI_CONF_DIR": str(conf_dir),
           **NODE_TOOLS, "PATH": bin_dir(tmp_path, "ip", "nsenter", "ethtool", fakes={"containerd": new})}
    rc, checks = doctor(node, env)
    assert rc == 0 and "containerd 2.0.2 parses up to 1.1.0" in checks["cni-configs"]["summary"]


def test_a_refused_request_is_in_the_log_file_too(node, pod, tmp_path):
    path = tmp_path / "ahd.log"
    node.write_policy(logFile=str(path))
    bad = node.cni("ADD", node.conf(node.nics[0].pci), "c1", pod, "")
    assert bad.json["code"] == 4
    (line,) = path.read_text().splitlines()
    assert "level=error" in line and 'msg="CNI_IFNAME is not set (code 4)"' in line


def test_doctor_names_a_fifo_in_the_cni_config_dir_and_follows_a_symlink(node, ready, tmp_path):
    """A FIFO is read non-blocking and is a failed line naming it; a symlink to a regular
    config is followed (libcni follows it too) and counted."""
    conf_dir = tmp_path / "links.d"
    conf_dir.mkdir()
    os.mkfifo(conf_dir / "00-x.conflist")
    (tmp_path / "ahd.conf").write_text(json.dumps(
        {"cniVersion": "1.0.0", "name": "n", "type": "amd-host-device"}))
    (conf_dir / "10-ahd.conf").symlink_to(tmp_path / "ahd.conf")
    check = failed(node, {**ready, "AMD_HOST_DEVICE_CNI_CONF_DIR": str(conf_dir)},
                   "cni-configs")
    assert "00-x.conflist" in check["summary"] and "not a regular file" in check["summary"]
    assert "10-ahd.conf: cniVersion 1.0.0" in check["details"]


def test_a_failing_add_names_a_missing_ip(node, pod, tmp_path):
    """As doctor does: which tool, which copy, not just code 101 and a shell's words."""
    call = node.cni("ADD", node.conf(node.nics[0].pci), "c1", pod, "net1",
                    extra_env={**NODE_TOOLS, "PATH": bin_dir(tmp_path, "nsenter", "ethtool")})
    assert call.rc != 0
    assert "ip not found (node: ip not found on PATH)" in call.json["details"], call.json
    assert "doctor --tools" in call.json["details"]


def test_a_failing_add_names_an_ip_without_json(node, pod, tmp_path):
    """BusyBox ip, iproute2 < 4.13: ADD says the tool cannot print JSON, not its usage text."""
    busybox_ip = ('case " $* " in *" -j "*) echo "BusyBox v1.36.1 multi-call binary." >&2; '
                  f'exit 1;; esac\nexec {shutil.which("ip")} "$@"\n')
    env = {**NODE_TOOLS, "PATH": bin_dir(tmp_path, "nsenter", "ethtool", fakes={"ip": busybox_ip})}
    call = node.cni("ADD", node.conf(node.nics[0].pci), "c1", pod, "net1", extra_env=env)
    assert call.rc != 0
    assert "does not support -j (JSON output): install iproute2 >= 4.13" in \
        call.json["details"], call.json
    assert node.addresses(node.node, node.nics[0].name) == {node.nics[0].v4, node.nics[0].v6}
