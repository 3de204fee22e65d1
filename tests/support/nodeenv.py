"""A node under test, reached only through a testinfra host: `local://` (a node built in a
network namespace on this machine), `podman://NAME` (a node container), `docker://kind-worker`.

Everything the suite does on the node goes through `host.run`: making veth NICs with a
top-of-rack peer and a fake PCI tree, running the plugin as Multus would, observing links,
addresses and state files. The same code makes the NICs for `hack/kind-e2e.sh`.
"""

from __future__ import annotations

import json
import random
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.support.simnode import CniCall


@dataclass(frozen=True)
class Nic:
    """A veth stand-in for an AMD NIC, with its peer on the top-of-rack side."""

    name: str
    pci: str
    v4: str
    peer_v4: str
    v6: str = ""        # nodad on the node, as an admin configures a fabric NIC
    peer_v6: str = ""


class NodeEnv:
    def __init__(self, host: Any, plugin: str, cni_path: str, tag: str = "",
                 daemon: bool = False) -> None:
        self.host = host
        self.daemon = daemon
        self.daemon_pid = 0
        self.plugin = plugin
        self.cni_path = cni_path
        self.tag = tag or f"e2e{random.randrange(10**5)}"
        self.local = host.backend.NAME == "local"
        self.node_ns = f"{self.tag}-node" if self.local else ""
        self.tor = f"{self.tag}-tor"
        self.root = f"/var/tmp/{self.tag}"
        self.sysfs = f"{self.root}/sys"
        self.state_dir = f"{self.root}/state"
        self.devinfo_root = f"{self.root}/devinfo"   # Multus's /var/run/k8s.cni.cncf.io/devinfo
        # Thick mode's socket: only a daemon this suite starts (--daemon) listens there.
        self.socket = f"{self.root}/run/daemon.sock"
        self.nics: list[Nic] = []
        self.pods: list[str] = []
        self.subnet = random.randrange(1, 250)

    # -- commands on the node -----------------------------------------------------------------
    def on_node(self, cmd: str) -> str:
        return f"ip netns exec {self.node_ns} {cmd}" if self.node_ns else cmd

    def run(self, cmd: str, check: bool = True, in_node: bool = True) -> Any:
        """in_node=False for `ip netns add/del`: named netns made inside `ip netns exec`'s
        private mount namespace would be invisible outside it."""
        out = self.host.run(self.on_node(cmd) if in_node else cmd)
        if check and out.rc != 0:
            raise RuntimeError(f"{cmd}: rc={out.rc} {out.stderr}")
        return out

    # -- building -----------------------------------------------------------------------------
    def setup(self, nics: int = 2) -> NodeEnv:
        if self.local:
            self.run(f"ip netns add {self.node_ns}", in_node=False)
            self.run("ip link set lo up")
        self.run(f"ip netns add {self.tor}", in_node=False)
        self.run(f"ip -n {self.tor} link set lo up")
        for i in range(1, nics + 1):
            self.add_nic(i)
        if self.daemon:
            self.start_daemon()
        return self

    def _env(self) -> dict[str, str]:
        return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "CNI_PATH": self.cni_path, "AMD_HOST_DEVICE_SYSFS": self.sysfs,
                "AMD_HOST_DEVICE_STATE_DIR": self.state_dir,
                "AMD_HOST_DEVICE_NODE_CONFIG": f"{self.root}/amd-host-device.conf",
                "AMD_HOST_DEVICE_SOCKET": self.socket,
                "AMD_HOST_DEVICE_DEVINFO_DIR": self.devinfo_root}

    def start_daemon(self) -> None:
        """`amd-host-device daemon` in the background on the node, as the DaemonSet runs it;
        ready once it answers a ping."""
        argv = " ".join(shlex.quote(f"{k}={v}") for k, v in self._env().items())
        background = (f"{self.on_node('')}env -i {argv} {shlex.quote(self.plugin)} daemon "
                      f"--reconcile-interval 0 >>{self.root}/daemon.log 2>&1 </dev/null & echo $!")
        out = self.run(f"sh -c {shlex.quote(background)}", in_node=False)
        self.daemon_pid = int(out.stdout.strip())
        ping = f"env -i {argv} {shlex.quote(self.plugin)} daemon --ping"
        loop = f"for i in $(seq 600); do {ping} && exit 0; sleep 0.1; done; exit 1"
        waited = self.run(f"sh -c {shlex.quote(loop)}", check=False, in_node=False)
        if waited.rc != 0:
            raise RuntimeError(f"the daemon did not come up: {self.daemon_log()[-2000:]}")

    def _alive(self, pid: int) -> str:
        """Shell test: the process exists and is no zombie (a node container's PID 1 may be a
        `sleep` that reaps nobody)."""
        return f"kill -0 {pid} 2>/dev/null && ! grep -q '^State:.*Z' /proc/{pid}/status"

    def daemon_alive(self) -> bool:
        return bool(self.daemon_pid) and self.run(
            f"sh -c {shlex.quote(self._alive(self.daemon_pid))}", check=False,
            in_node=False).rc == 0

    def stop_daemon(self) -> None:
        """SIGTERM by PID; wait for it to exit (it removes its socket); SIGKILL after 60 s."""
        if not self.daemon_pid:
            return
        pid, self.daemon_pid = self.daemon_pid, 0
        wait = (f"kill -TERM {pid}; for i in $(seq 600); do {self._alive(pid)} || exit 0; "
                f"sleep 0.1; done; kill -KILL {pid}")
        self.run(f"sh -c {shlex.quote(wait)}", check=False, in_node=False)

    def daemon_log(self) -> str:
        return str(self.run(f"cat {self.root}/daemon.log", check=False, in_node=False).stdout)

    def add_nic(self, i: int) -> Nic:
        s = self.subnet
        nic = Nic(f"{self.tag[-5:]}n{i}", f"0000:{0x40 + i:02x}:00.0", f"10.{s}.{i}.2/24",
                  f"10.{s}.{i}.1", f"fd00:{s}:{i}::2/64", f"fd00:{s}:{i}::1")
        self.run(f"ip link add {nic.name} mtu 9000 type veth peer name tor{i} netns {self.tor}")
        self.run(f"ip -n {self.tor} link set tor{i} mtu 9000 up")
        self.run(f"ip -n {self.tor} addr add {nic.peer_v4}/24 dev tor{i}")
        self.run(f"ip addr add {nic.v4} dev {nic.name}")
        # A node container may run with IPv6 disabled: then its NICs are IPv4 only.
        if (self.run(f"ip -n {self.tor} addr add {nic.peer_v6}/64 dev tor{i} nodad",
                     check=False).rc != 0
                or self.run(f"ip addr add {nic.v6} dev {nic.name} nodad", check=False).rc != 0):
            nic = Nic(nic.name, nic.pci, nic.v4, nic.peer_v4)
        self.run(f"ip link set {nic.name} up")
        self.run(f"mkdir -p {self.sysfs}/bus/pci/devices/{nic.pci}/net/{nic.name}")
        self.nics.append(nic)
        return nic

    def add_pod(self) -> str:
        name = f"{self.tag}-pod{len(self.pods) + 1}"
        self.run(f"ip netns add {name}", in_node=False)
        self.run(f"ip -n {name} link set lo up")
        self.pods.append(name)
        return f"/var/run/netns/{name}"

    def teardown(self) -> None:
        self.stop_daemon()
        for pod in self.pods:
            self.run(f"ip netns del {pod}", check=False, in_node=False)
        for nic in self.nics:
            self.run(f"ip link del {nic.name}", check=False)
        self.run(f"ip netns del {self.tor}", check=False, in_node=False)
        self.run(f"rm -rf {self.root}", check=False, in_node=False)
        if self.local:
            self.run(f"ip netns del {self.node_ns}", check=False, in_node=False)

    # -- running the plugin as Multus would ---------------------------------------------------
    def cni(self, command: str, conf: dict[str, Any] | str, container_id: str = "",
            netns: str = "", ifname: str = "", plugin: str = "",
            extra_env: dict[str, str] | None = None, cni_path: str = "",
            timeout: float = 0) -> CniCall:
        env = {**self._env(), "CNI_COMMAND": command, "CNI_PATH": cni_path or self.cni_path}
        for key, value in (("CNI_CONTAINERID", container_id), ("CNI_NETNS", netns),
                           ("CNI_IFNAME", ifname)):
            if value:
                env[key] = value
        env.update(extra_env or {})
        stdin = conf if isinstance(conf, str) else json.dumps(conf)
        argv = " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
        cmd = f"printf %s {shlex.quote(stdin)} | {self.on_node('')}env -i {argv} " \
              f"{shlex.quote(plugin or self.plugin)}"
        out = self.host.run(cmd)
        return CniCall(out.rc, out.stdout, out.stderr)

    # -- observing ----------------------------------------------------------------------------
    def link(self, name: str, netns: str = "") -> dict[str, Any] | None:
        prefix = f"-n {netns.rsplit('/', 1)[-1]} " if netns else ""
        out = self.run(f"ip {prefix}-j addr show dev {name}", check=False)
        return json.loads(out.stdout)[0] if out.rc == 0 and out.stdout.strip() else None

    def addresses(self, name: str, netns: str = "") -> set[str]:
        link = self.link(name, netns) or {}
        return {f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])
                if a.get("scope") != "link"}

    def has_link(self, netns: str) -> Callable[[str], bool]:
        """Multus's check that an interface name is free in the pod (for MultusPod)."""
        return lambda ifname: self.link(ifname, netns) is not None

    def remove_file(self, path: str) -> None:
        """What Multus does with the device-info file on DEL (for MultusPod)."""
        self.run(f"rm -f {shlex.quote(path)}", in_node=False)

    def read_json(self, path: str) -> Any:
        """A JSON file on the node; None if there is none."""
        out = self.run(f"cat {shlex.quote(path)}", check=False, in_node=False)
        return json.loads(out.stdout) if out.rc == 0 else None

    def ping(self, netns: str, address: str) -> bool:
        pod = netns.rsplit("/", 1)[-1]
        return self.run(f"ip netns exec {pod} ping -c1 -W2 {address}", check=False,
                        in_node=False).rc == 0


def main() -> int:
    """`python -m tests.support.nodeenv HOST_URL TAG [NICS]`: make NICs (with their top-of-rack peer)
    on a node, the same way the suite does, and leave them there; prints them as JSON.
    Used by hack/kind-e2e.sh to give a kind worker NICs for a real pod."""
    import testinfra

    url, tag = sys.argv[1], sys.argv[2]
    nics = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    env = NodeEnv(testinfra.get_host(url), plugin="", cni_path="", tag=tag).setup(nics)
    print(json.dumps([{"name": n.name, "address": n.v4, "peer": n.peer_v4} for n in env.nics]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
