"""A simulated node in network namespaces: veth "NICs" with addresses and a fake PCI sysfs.

    node netns   ens1f0 (10.<s>.1.2/24, fd00:<s>:1::2/64)  ──veth──  tor netns  tor1 (.1)
                 ens1f1 (10.<s>.2.2/24, fd00:<s>:2::2/64)  ──veth──             tor2 (.1)
    fake sysfs   <tmp>/sys/bus/pci/devices/0000:0N:00.0/net/ens1fX   (+ driver -> ionic)

Everything lives in namespaces with a unique prefix and in one temp dir, and close() removes
all of it, so nothing touches the machine's own interfaces. The demo, the tests and the
benchmark all build their node here.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_PLUGIN = os.path.join(REPO, ".venv", "bin", "amd-host-device")
CNI_DIRS = ("/usr/lib/cni",)


def sh(*argv: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, check=check)


@dataclass(frozen=True)
class Nic:
    name: str
    pci: str
    v4: str        # node side, with prefix
    v6: str
    peer_v4: str   # top-of-rack side, no prefix
    peer_v6: str
    mtu: int


@dataclass
class CniCall:
    rc: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout) if self.stdout.strip() else None


@dataclass
class SimNode:
    prefix: str = field(default_factory=lambda: f"ahd{os.getpid() % 10000}x{random.randrange(10**4)}")
    nics: list[Nic] = field(default_factory=list)
    pods: list[str] = field(default_factory=list)
    subnet: int = field(default_factory=lambda: random.randrange(1, 250))
    plugin: str = field(default_factory=lambda: os.environ.get("AMD_HOST_DEVICE_PLUGIN", DEFAULT_PLUGIN))
    macs: dict[str, str] = field(default_factory=dict)   # PCI address -> MAC of its NIC

    def __post_init__(self) -> None:
        self.node = f"{self.prefix}-node"
        self.tor = f"{self.prefix}-tor"
        self.tmp = tempfile.mkdtemp(prefix=f"{self.prefix}-")
        self.sysfs = os.path.join(self.tmp, "sys")
        self.state_dir = os.path.join(self.tmp, "state")
        # Multus's /var/run/k8s.cni.cncf.io/devinfo on this node (plugin/devinfo.py)
        self.devinfo_root = os.path.join(self.tmp, "devinfo")
        # The node policy file; see write_policy(). `{}` as the installer writes it without a
        # ConfigMap: a node without one gets a warning on every command.
        self.policy_path = os.path.join(self.tmp, "amd-host-device.d", "amd-host-device.conf")
        self.write_policy()
        # The daemon's socket (thick mode). Until start_daemon() nothing listens there, so
        # the plugin runs in process (and never reaches a daemon this machine may run).
        self.socket = os.path.join(self.tmp, "run", "daemon.sock")
        self.daemon: subprocess.Popen[bytes] | None = None
        self.daemon_log_path = os.path.join(self.tmp, "daemon.log")
        sh("ip", "netns", "add", self.node)
        sh("ip", "netns", "add", self.tor)
        sh("ip", "-n", self.node, "link", "set", "lo", "up")
        sh("ip", "-n", self.tor, "link", "set", "lo", "up")

    # -- building ----------------------------------------------------------------------------
    def add_nic(self, index: int, mtu: int = 9000, up: bool = True, name: str = "",
                with_v6: bool = True) -> Nic:
        s = self.subnet
        nic = Nic(name or f"ens1f{index - 1}", f"0000:{index:02x}:00.0", f"10.{s}.{index}.2/24",
                  f"fd00:{s}:{index}::2/64", f"10.{s}.{index}.1", f"fd00:{s}:{index}::1", mtu)
        peer = f"tor{index}"
        sh("ip", "-n", self.node, "link", "add", nic.name, "mtu", str(mtu), "type", "veth",
           "peer", "name", peer, "netns", self.tor)
        sh("ip", "-n", self.tor, "link", "set", peer, "mtu", str(mtu), "up")
        sh("ip", "-n", self.tor, "addr", "add", f"{nic.peer_v4}/24", "dev", peer)
        sh("ip", "-n", self.node, "addr", "add", nic.v4, "dev", nic.name)
        if with_v6:
            sh("ip", "-n", self.tor, "addr", "add", f"{nic.peer_v6}/64", "dev", peer, "nodad")
            sh("ip", "-n", self.node, "addr", "add", nic.v6, "dev", nic.name, "nodad")
        if up:
            sh("ip", "-n", self.node, "link", "set", nic.name, "up")
        self.add_pci(nic.pci, nic.name)
        self.macs[nic.pci] = self.link(self.node, nic.name)["address"]
        self.nics.append(nic)
        return nic

    def add_pci(self, pci: str, netdev: str, driver: str = "ionic", vendor: str = "0x1dd8") -> None:
        dev = os.path.join(self.sysfs, "bus", "pci", "devices", pci)
        os.makedirs(os.path.join(dev, "net", netdev), exist_ok=True)
        for name, value in (("vendor", vendor), ("class", "0x020000")):  # AMD, Ethernet
            with open(os.path.join(dev, name), "w") as f:
                f.write(value + "\n")
        drv = os.path.join(self.sysfs, "bus", "pci", "drivers", driver)
        os.makedirs(drv, exist_ok=True)
        link = os.path.join(dev, "driver")
        if not os.path.lexists(link):
            os.symlink(os.path.relpath(drv, dev), link)

    def sync_sysfs(self) -> None:
        """Real sysfs lists a PCI function's netdev under its current name, and only while it
        is in the viewer's netns; mirror that (by MAC) before each plugin run."""
        links = self.ip_json(self.node, "link") or []
        by_mac = {x.get("address"): x["ifname"] for x in links}
        for pci, mac in self.macs.items():
            net = os.path.join(self.sysfs, "bus", "pci", "devices", pci, "net")
            want = {by_mac[mac]} if mac in by_mac else set()
            have = set(os.listdir(net)) if os.path.isdir(net) else set()
            for name in have - want:
                shutil.rmtree(os.path.join(net, name), ignore_errors=True)
            for name in want - have:
                os.makedirs(os.path.join(net, name), exist_ok=True)

    def add_pod(self) -> str:
        name = f"{self.prefix}-pod{len(self.pods) + 1}"
        sh("ip", "netns", "add", name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        self.pods.append(name)
        return name

    def remove_pod(self, name: str) -> None:
        sh("ip", "netns", "del", name, check=False)
        if name in self.pods:
            self.pods.remove(name)

    @staticmethod
    def netns_path(name: str) -> str:
        return f"/var/run/netns/{name}"

    # -- running -----------------------------------------------------------------------------
    def cni(self, command: str, conf: dict[str, Any] | str, container_id: str = "", netns: str = "",
            ifname: str = "", plugin: str = "", extra_env: dict[str, str] | None = None,
            cni_path: str = ":".join(CNI_DIRS), timeout: float = 120) -> CniCall:
        """Run a CNI plugin inside the node netns, as a runtime on that node would."""
        env = {**self.env(), "CNI_COMMAND": command, "CNI_PATH": cni_path}
        if container_id:
            env["CNI_CONTAINERID"] = container_id
        if netns:
            env["CNI_NETNS"] = netns
        if ifname:
            env["CNI_IFNAME"] = ifname
        env.update(extra_env or {})
        stdin = conf if isinstance(conf, str) else json.dumps(conf)
        plugin = plugin or self.plugin
        self.sync_sysfs()
        argv = ["ip", "netns", "exec", self.node, "env", "-i",
                *(f"{k}={v}" for k, v in env.items()), plugin]
        p = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)
        return CniCall(p.returncode, p.stdout, p.stderr)

    def env(self) -> dict[str, str]:
        """What the plugin sees on this node besides the CNI variables."""
        return {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                "AMD_HOST_DEVICE_SYSFS": self.sysfs, "AMD_HOST_DEVICE_STATE_DIR": self.state_dir,
                "AMD_HOST_DEVICE_NODE_CONFIG": self.policy_path, "AMD_HOST_DEVICE_SOCKET": self.socket,
                "AMD_HOST_DEVICE_DEVINFO_DIR": self.devinfo_root}

    def run(self, *args: str, plugin: str = "", extra_env: dict[str, str] | None = None,
            timeout: float = 120) -> CniCall:
        """Run the plugin by hand in the node netns (`list`, `doctor`), as an admin would."""
        env = {**self.env(), **(extra_env or {})}
        self.sync_sysfs()
        argv = ["ip", "netns", "exec", self.node, "env", "-i",
                *(f"{k}={v}" for k, v in env.items()), plugin or self.plugin, *args]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        return CniCall(p.returncode, p.stdout, p.stderr)

    def start_daemon(self, *args: str, plugin: str = "", wait: float = 60,
                     extra_env: dict[str, str] | None = None) -> int:
        """`amd-host-device daemon` inside the node netns, as the DaemonSet runs it; returns
        its PID once it answers a ping. Its log (stdout and stderr) is daemon_log()."""
        env = {**self.env(), "CNI_PATH": ":".join(CNI_DIRS), **(extra_env or {})}
        argv = ["ip", "netns", "exec", self.node, "env", "-i",
                *(f"{k}={v}" for k, v in env.items()), plugin or self.plugin, "daemon",
                "--reconcile-interval", "0", *args]
        with open(self.daemon_log_path, "ab") as log:
            # ip netns exec and env exec: the PID is the daemon's.
            self.daemon = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + wait
        while not self.daemon_ready():
            if self.daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the daemon did not come up: {self.daemon_log()[-2000:]}")
            time.sleep(0.05)
        return self.daemon.pid

    def daemon_ready(self) -> bool:
        from plugin.daemon_client import ping

        return ping(self.socket)

    def stop_daemon(self, timeout: float = 60) -> int | None:
        """SIGTERM, by PID, and wait; SIGKILL if it does not stop. Its exit code."""
        if self.daemon is None:
            return None
        daemon, self.daemon = self.daemon, None
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                return daemon.wait(timeout)
            except subprocess.TimeoutExpired:
                daemon.kill()
        return daemon.wait()

    def daemon_log(self) -> str:
        try:
            with open(self.daemon_log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def conf(self, pci: str = "", version: str = "1.0.0", **extra: Any) -> dict[str, Any]:
        """The delegate config Multus would hand us for one attachment."""
        c: dict[str, Any] = {"cniVersion": version, "name": "amd-host-device-nad",
                             "type": "amd-host-device"}
        if pci:
            c["deviceID"] = pci
            c["pciBusID"] = pci
        c.update(extra)
        return c

    def write_policy(self, **keys: Any) -> None:
        """The admin's node policy (plugin/policy.py), e.g. allowDefaultRouteDevice=True."""
        os.makedirs(os.path.dirname(self.policy_path), exist_ok=True)
        with open(self.policy_path, "w") as f:
            json.dump(keys, f)

    # -- observing ---------------------------------------------------------------------------
    def ip_json(self, ns: str, *args: str) -> Any:
        out = sh("ip", "-n", ns, "-j", *args, check=False)
        return json.loads(out.stdout) if out.returncode == 0 and out.stdout.strip() else None

    def link(self, ns: str, name: str) -> dict[str, Any] | None:
        found = self.ip_json(ns, "addr", "show", "dev", name)
        return found[0] if found else None

    def addresses(self, ns: str, name: str) -> set[str]:
        link = self.link(ns, name) or {}
        return {f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])
                if a.get("scope") != "link"}

    def ping(self, ns: str, address: str, count: int = 1) -> bool:
        flag = "-6" if ":" in address else "-4"
        return sh("ip", "netns", "exec", ns, "ping", flag, "-c", str(count), "-W", "2",
                  address, check=False).returncode == 0

    # -- teardown ----------------------------------------------------------------------------
    def close(self) -> None:
        self.stop_daemon()
        for pod in list(self.pods):
            self.remove_pod(pod)
        sh("ip", "netns", "del", self.node, check=False)
        sh("ip", "netns", "del", self.tor, check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> SimNode:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


@contextlib.contextmanager
def node_with_nics(count: int = 2) -> Iterator[SimNode]:
    """A simulated node with `count` NICs, removed afterwards even when building it fails."""
    node = SimNode()
    try:
        for index in range(1, count + 1):
            node.add_nic(index)
        yield node
    finally:
        node.close()
