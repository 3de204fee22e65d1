"""The installed bundle on node roots unlike the build's: it must need nothing from the root it
runs in but the kernel (/proc, /sys, /dev and the netns paths).

The image's installer (`install.py --host-dir ROOT/opt/cni/bin --node-dir /opt/cni/bin`) writes
the bundle into each root; then ADD, CHECK and DEL run chrooted into that root, inside the
simulated node's netns, in a private mount namespace that binds only /proc, /sys, /dev,
/run/netns and the node's temp dir in. The pod changes the NIC's MTU, offloads and channels;
the NIC must come home whole every time. Roots:

- empty: nothing but what the installer wrote (no libc, no /bin/sh, no ip): `make test`;
- bullseye (Debian 11, glibc 2.31), trixie (Debian 13): debootstrap --variant=minbase roots,
  built once and cached by hack/node-root.sh: `make test-nodes`.

AHD_NODE_ROOTS picks them (space-separated; default "empty"); AHD_BUNDLE names a frozen bundle
(`make bundle`; default: build/bundle, built by `make bundle` if absent).
"""

import json
import os
import subprocess

import pytest

from tests.support.checks import ns, ok, restored
from tests.support.simnode import REPO, node_with_nics, sh

ROOTS = os.environ.get("AHD_NODE_ROOTS", "empty").split()
NODE_DIR = "/opt/cni/bin"
# Mount what the kernel gives, nothing of this machine's userland, then run argv chrooted.
_ENTER = r"""
set -e
root=$1; tmp=$2; shift 2
mount --bind "$root" "$root"
for d in proc sys dev run/netns "${tmp#/}"; do
  mkdir -p "$root/$d"
  mount --rbind "/$d" "$root/$d"
done
exec chroot "$root" "$@"
"""

if os.geteuid() != 0:
    raise pytest.UsageError("node-root tests need root (namespaces, chroot, mounts)")


@pytest.fixture(scope="module")
def bundle():
    path = os.environ.get("AHD_BUNDLE") or os.path.join(REPO, "build", "bundle")
    if not os.environ.get("AHD_BUNDLE"):
        subprocess.run(["make", "-s", "-C", REPO, "bundle"], check=True, capture_output=True)
    assert os.path.isfile(os.path.join(path, "MANIFEST")), f"no frozen bundle at {path}"
    return path


@pytest.fixture(params=ROOTS)
def root(request, tmp_path):
    """A writable copy of the root: the empty dir, or an overlay on the cached minbase root
    (the cache stays as debootstrap made it)."""
    top = tmp_path / "root"
    top.mkdir()
    if request.param == "empty":
        yield request.param, str(top)
        return
    lower = subprocess.run([os.path.join(REPO, "hack", "node-root.sh"), request.param],
                           check=True, capture_output=True, text=True).stdout.strip()
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={lower},upperdir={upper},workdir={work}", str(top)], check=True)
    try:
        yield request.param, str(top)
    finally:
        subprocess.run(["umount", "-l", str(top)], check=False)


def install(bundle, root):
    host = os.path.join(root, NODE_DIR.lstrip("/"))
    os.makedirs(host, exist_ok=True)
    p = subprocess.run([os.path.join(bundle, "bin", "python3"), "-IS",
                        os.path.join(bundle, "install.py"), "--bundle", bundle,
                        "--host-dir", host, "--node-dir", NODE_DIR],
                       capture_output=True, text=True, timeout=300, check=False)
    assert p.returncode == 0, p.stderr
    return p.stderr


class Chrooted:
    """Runs the installed plugin as a runtime on that node would: chrooted, env passed as is
    (no `env` in an empty root)."""

    def __init__(self, node, root):
        self.node, self.root = node, root

    def run(self, argv, env, stdin=""):
        self.node.sync_sysfs()
        full = ["ip", "netns", "exec", self.node.node, "unshare", "--mount",
                "--propagation", "private", "/bin/sh", "-c", _ENTER, "enter", self.root,
                self.node.tmp, *argv]
        return subprocess.run(full, input=stdin, env=env, capture_output=True, text=True,
                              timeout=120, check=False)

    def cni(self, command, conf, container_id, netns, ifname):
        env = {**self.node.env(), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
               "CNI_COMMAND": command, "CNI_PATH": NODE_DIR, "CNI_CONTAINERID": container_id,
               "CNI_NETNS": netns, "CNI_IFNAME": ifname,
               "AMD_HOST_DEVICE_FALLBACK_DIRS": ""}
        p = self.run([f"{NODE_DIR}/amd-host-device"], env, json.dumps(conf))
        return type("Call", (), {"rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr,
                                 "json": json.loads(p.stdout) if p.stdout.strip() else None})()


def _nic_state(node, nic):
    def ethtool(flag):
        out = sh("ip", "netns", "exec", node.node, "ethtool", flag, nic.name).stdout
        return out.split("Current hardware settings:", 1)[-1] if flag == "-l" else \
            sorted(x.strip() for x in out.splitlines() if "[fixed]" not in x)
    return node.link(node.node, nic.name)["mtu"], ethtool("-k"), ethtool("-l")


def test_add_check_del_bring_the_nic_home_whole(bundle, root):
    release, path = root
    said = install(bundle, path)
    assert "installed amd-host-device" in said
    with node_with_nics(1) as node:
        nic = node.nics[0]
        pod = f"/run/netns/{ns(node.netns_path(node.add_pod()))}"
        before = _nic_state(node, nic)
        plugin = Chrooted(node, path)
        for round_ in range(2):
            result = ok(plugin.cni("ADD", node.conf(nic.pci), f"c{round_}", pod, "net1"))
            assert node.link(node.node, nic.name) is None, f"{release}: the NIC is not in the pod"
            ok(plugin.cni("CHECK", node.conf(nic.pci, prevResult=result), f"c{round_}", pod,
                          "net1"))
            p = ns(pod)
            sh("ip", "-n", p, "link", "set", "net1", "mtu", "1400")
            sh("ip", "netns", "exec", p, "ethtool", "-K", "net1", "tx", "off", "rx", "off")
            sh("ip", "netns", "exec", p, "ethtool", "-L", "net1", "rx", "2", "tx", "2")
            ok(plugin.cni("DEL", node.conf(nic.pci), f"c{round_}", pod, "net1"))
            assert restored(node, nic), f"{release}: the NIC did not come home"
            assert _nic_state(node, nic) == before, f"{release}: MTU, offloads or channels"


def test_doctor_finds_every_tool_in_the_bundle(bundle, root):
    release, path = root
    install(bundle, path)
    with node_with_nics(1) as node:
        p = Chrooted(node, path).run([f"{NODE_DIR}/amd-host-device", "doctor", "--tools",
                                      "--json"], {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert p.returncode == 0, p.stdout + p.stderr
    checks = {c["name"]: c for c in json.loads(p.stdout)["checks"]}
    assert list(checks) == ["ip-json", "ethtool", "nsenter", "sh"]
    for check in checks.values():
        assert check["status"] == "pass", (release, check)
        assert "(bundled /opt/cni/bin/.amd-host-device-" in check["summary"], check
