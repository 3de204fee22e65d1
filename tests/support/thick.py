"""Multus thick's multus-daemon container, simulated on this machine, to run our plugin in.

What Multus 4 deploys (k8snetworkplumbingwg/multus-cni, deployments/multus-daemonset-thick.yml):
a debian:stable-slim container (no iproute2, no ethtool), hostNetwork, hostPID, privileged, with
exactly these host mounts, and delegates exec'd inside it (under chroot to /hostroot when the
daemon-config has `chrootDir`, its default):

    host /etc/cni/net.d       -> /host/etc/cni/net.d
    host /opt/cni/bin         -> /opt/cni/bin (same path: here the test's install dir, at its own)
    host /run                 -> /host/run
    host /var/lib/cni/multus  -> /var/lib/cni/multus
    host /var/lib/kubelet     -> /var/lib/kubelet          (HostToContainer)
    host /run/k8s.cni.cncf.io -> /run/k8s.cni.cncf.io
    host /run/netns           -> /run/netns                (HostToContainer)
    host /                    -> /hostroot                 (HostToContainer)
    host /etc/cni/multus/net.d -> /etc/cni/multus/net.d

Here:
- the node's root is this machine's root; its init is `sleep`, PID 1 of a PID namespace of its
  own (`unshare --pid --fork --mount-proc`), so that inside, /proc/1/root is the node's root as
  with hostPID (this machine's own PID 1 is a sandbox supervisor whose root is not ours);
- the container is a process in that PID namespace and the node's netns (hostNetwork), in a
  private mount namespace (a slave of the node's, as HostToContainer), chrooted into an overlay
  of a cached `debootstrap --variant=minbase bookworm` root (no iproute2) with a fresh upper
  layer per start: its writable layer, which `layer_files` lists;
- host dirs this machine does not have (/var/lib/kubelet, the Multus dirs) are stand-ins in the
  test's temp dir, so nothing is created on the machine;
- each CNI call is `nsenter` into the container (its mount, PID and net namespaces and root),
  as the daemon's exec would be, optionally under `chroot /hostroot` (chrootDir) or with a
  capability dropped from the bounding set (`setpriv`, an unprivileged container).

Everything dies with the PID namespace's init (and its mount namespaces with it); `close()`
kills it by PID and removes the temp dirs, also when a test failed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Any

from tests.support.simnode import CniCall, SimNode

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROOTS = os.environ.get("AHD_ROOTS", "/var/tmp/ahd-roots")
MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STAMP = ".ahd-complete"


def minimal_root(release: str = "bookworm") -> str:
    """A Debian minbase root, built once and cached under ROOTS/<release> with a stamp written
    last (hack/node-root.sh's layout): a half-built root is rebuilt, never used."""
    root = os.path.join(ROOTS, release)
    os.makedirs(ROOTS, exist_ok=True)
    with open(os.path.join(ROOTS, f".{release}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(os.path.join(root, STAMP)):
            shutil.rmtree(root + ".tmp", ignore_errors=True)
            shutil.rmtree(root, ignore_errors=True)
            with open(os.path.join(ROOTS, f"{release}.log"), "w") as log:
                subprocess.run(["debootstrap", "--variant=minbase", release, root + ".tmp",
                                MIRROR], stdout=log, stderr=subprocess.STDOUT, check=True)
            os.rename(root + ".tmp", root)
            with open(os.path.join(root, STAMP), "w") as f:
                f.write(time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))
    return root


def _bundle_is_current(bundle: str) -> bool:
    """build/bundle carries this worktree's plugin and installer (else `make bundle` again)."""
    if not os.path.exists(os.path.join(bundle, "MANIFEST")):
        return False
    lib = os.path.join(bundle, "lib")
    pyver = next((d for d in os.listdir(lib) if d.startswith("python3")), "")
    pairs = [(os.path.join(REPO, "container", "install.py"), os.path.join(bundle, "install.py"))]
    pairs += [(os.path.join(REPO, "plugin", n), os.path.join(lib, pyver, "plugin", n))
              for n in os.listdir(os.path.join(REPO, "plugin")) if n.endswith(".py")]
    for ours, theirs in pairs:
        try:
            with open(ours, "rb") as a, open(theirs, "rb") as b:
                if a.read() != b.read():
                    return False
        except FileNotFoundError:
            return False
    return True


def installed_plugin(host_dir: str, policy_dir: str) -> str:
    """`make bundle` (when build/bundle is not this tree's), then container/install.py with
    the bundle's own interpreter, as the DaemonSet's init container runs it: the entry."""
    bundle = os.path.join(REPO, "build", "bundle")
    if not _bundle_is_current(bundle):
        subprocess.run(["make", "-s", "-C", REPO, "bundle"], check=True, capture_output=True)
    os.makedirs(host_dir, exist_ok=True)
    out = subprocess.run([os.path.join(bundle, "bin", "python3"), "-IS",
                          os.path.join(bundle, "install.py"), "--bundle", bundle,
                          "--host-dir", host_dir, "--policy-dir", policy_dir],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"install.py failed: {out.stderr[-2000:]}")
    return os.path.join(host_dir, "amd-host-device")


def _child_of(pid: int, wait: float = 10) -> int:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                kids = f.read().split()
        except FileNotFoundError:
            kids = []
        if kids:
            return int(kids[0])
        time.sleep(0.02)
    raise RuntimeError(f"process {pid} started no child")


def _kill(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    if proc is not None:
        proc.wait(30)


class MultusThick:
    """The node's init (a PID namespace of its own) and the multus-daemon container."""

    MODES = ("chroot", "plain", "no-sys_chroot", "no-sys_ptrace")

    def __init__(self, node: SimNode, plugin_dir: str) -> None:
        self.node = node
        self.plugin_dir = plugin_dir
        self.root = minimal_root()
        self.tmp = tempfile.mkdtemp(prefix="ahd-thick-", dir="/var/tmp")
        self.fake_host = os.path.join(self.tmp, "host")
        self.layers: list[str] = []
        self.container: subprocess.Popen[bytes] | None = None
        self.container_pid = 0
        self.init = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "--propagation",
             "slave", "sleep", "infinity"], stdin=subprocess.DEVNULL)
        try:
            self.init_pid = _child_of(self.init.pid)
        except BaseException:
            self.close()
            raise

    # -- the container -----------------------------------------------------------------------
    def start(self) -> None:
        """A fresh multus-daemon container (a Multus restart: the old one's layer is gone
        with it, the node and its /run, state and netns stay)."""
        self.stop()
        layer = os.path.join(self.tmp, f"layer{len(self.layers)}")
        upper, work, merged = (os.path.join(layer, x) for x in ("upper", "work", "merged"))
        for d in (upper, work, merged):
            os.makedirs(d)
        self.layers.append(upper)
        stand_ins = {p: os.path.join(self.fake_host, p.strip("/").replace("/", "-"))
                     for p in ("/var/lib/cni/multus", "/var/lib/kubelet",
                               "/run/k8s.cni.cncf.io", "/etc/cni/multus/net.d")}
        for d in stand_ins.values():
            os.makedirs(d, exist_ok=True)
        net_d = "/etc/cni/net.d" if os.path.isdir("/etc/cni/net.d") else stand_ins[
            "/etc/cni/multus/net.d"]
        binds = [  # (host path, path in the container, recursive + slave: HostToContainer)
            (net_d, "/host/etc/cni/net.d", False),
            (self.plugin_dir, self.plugin_dir, False),
            ("/run", "/host/run", True),
            (stand_ins["/var/lib/cni/multus"], "/var/lib/cni/multus", False),
            (stand_ins["/var/lib/kubelet"], "/var/lib/kubelet", True),
            (stand_ins["/run/k8s.cni.cncf.io"], "/run/k8s.cni.cncf.io", False),
            ("/run/netns", "/run/netns", True),
            ("/", "/hostroot", True),
            (stand_ins["/etc/cni/multus/net.d"], "/etc/cni/multus/net.d", False),
            ("/dev", "/dev", True),
        ]
        lines = ["set -e", f"mount -t overlay overlay -o lowerdir={self.root},upperdir={upper},"
                 f"workdir={work} {merged}"]
        for src, dst, recursive in binds:
            target = merged + dst
            lines.append(f"mkdir -p '{target}'")
            lines.append(f"mount {'--rbind' if recursive else '--bind'} '{src}' '{target}'")
            if recursive:
                lines.append(f"mount --make-rslave '{target}'")
        # hostPID: the node's /proc shows the PID namespace the container is in (the rbind
        # brought this machine's, whose PIDs are not ours), in the container and at hostroot.
        lines += [f"mount -t proc proc {merged}/proc", f"mount -t proc proc {merged}/hostroot/proc",
                  f"mount -t sysfs sysfs {merged}/sys",
                  f"exec chroot {merged} /usr/bin/sleep infinity"]
        self.container = subprocess.Popen(
            ["nsenter", f"--target={self.init_pid}", "--pid",
             f"--net={self.node.netns_path(self.node.node)}", "--",
             "unshare", "--mount", "--propagation", "slave", "sh", "-c", "\n".join(lines)],
            stdin=subprocess.DEVNULL)
        try:
            self.container_pid = _child_of(self.container.pid)
        except RuntimeError:
            self.stop()
            raise
        deadline = time.monotonic() + 20
        while not self._ready():
            if self.container.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the multus-daemon container did not start")
            time.sleep(0.05)

    def _ready(self) -> bool:
        try:
            return os.readlink(f"/proc/{self.container_pid}/exe").endswith("sleep") and \
                os.stat(f"/proc/{self.container_pid}/root").st_ino != os.stat("/").st_ino
        except OSError:
            return False

    def stop(self) -> None:
        if self.container is not None:
            with_pid, self.container_pid = self.container_pid, 0
            if with_pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(with_pid, signal.SIGKILL)
            _kill(self.container)
            self.container = None

    # -- running -----------------------------------------------------------------------------
    def cni(self, command: str, conf: dict[str, Any] | str, container_id: str = "",
            netns: str = "", ifname: str = "", mode: str = "chroot", plugin: str = "",
            extra_env: dict[str, str] | None = None, timeout: float = 120) -> CniCall:
        """The plugin exec'd by the multus-daemon: under chroot /hostroot (chrootDir), in the
        container itself (plain), or in it without one capability (unprivileged)."""
        assert mode in self.MODES and self.container_pid, mode
        env = {**self.node.env(), "PATH": CONTAINER_PATH, "CNI_COMMAND": command,
               "CNI_PATH": self.plugin_dir}
        for key, value in (("CNI_CONTAINERID", container_id), ("CNI_NETNS", netns),
                           ("CNI_IFNAME", ifname)):
            if value:
                env[key] = value
        env.update(extra_env or {})
        prefix = {"chroot": ["/usr/sbin/chroot", "/hostroot"], "plain": [],
                  "no-sys_chroot": ["/usr/bin/setpriv", "--bounding-set", "-sys_chroot", "--"],
                  "no-sys_ptrace": ["/usr/bin/setpriv", "--bounding-set", "-sys_ptrace", "--"],
                  }[mode]
        self.node.sync_sysfs()
        argv = ["nsenter", f"--target={self.container_pid}", "--mount", "--pid", "--net",
                "--root", "--wd", "--", *prefix, plugin or os.path.join(self.plugin_dir,
                                                                          "amd-host-device")]
        stdin = conf if isinstance(conf, str) else json.dumps(conf)
        p = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout,
                           env=env)
        return CniCall(p.returncode, p.stdout, p.stderr)

    def run_in_container(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["nsenter", f"--target={self.container_pid}", "--mount", "--pid",
                               "--net", "--root", "--wd", "--", *argv],
                              capture_output=True, text=True, timeout=60, check=False)

    # -- observing ---------------------------------------------------------------------------
    def layer_files(self) -> list[str]:
        """Every file any of the container's writable layers got (paths in the container)."""
        found = []
        for upper in self.layers:
            for dirpath, _, names in os.walk(upper):
                found += [os.path.join(dirpath, n)[len(upper):] for n in names]
        return found

    # -- teardown ----------------------------------------------------------------------------
    def close(self) -> None:
        try:
            self.stop()
        finally:
            _kill(self.init)   # --kill-child: the PID namespace, and every mount in it, goes
            self._remove_tmp()

    def _remove_tmp(self) -> None:
        """Only once nothing is mounted under it here: the layers had the node's / bound at
        hostroot, and rmtree would walk into it."""
        with open("/proc/self/mountinfo") as f:
            mounted = [line.split()[4] for line in f]
        leaked = [m for m in mounted if m == self.tmp or m.startswith(self.tmp + "/")]
        if leaked:
            raise RuntimeError(f"mounts leaked into the test's namespace: {leaked[:5]}; "
                               f"{self.tmp} left in place")
        shutil.rmtree(self.tmp, ignore_errors=True)
