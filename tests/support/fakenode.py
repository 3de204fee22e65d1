"""A node without root: ADD and DEL run against it in unit tests (tests/unit/test_*_core.py).

It has the plugin's Node interface (plugin/node.py: `run`, `spawn`, `start_soon`) and answers
from recorded `ip -j` output (tests/data/identity/*.json, tests/data/*.txt): links live in two
namespaces, the node's and the pod's, and host-device's ADD and DEL move one between them as
the real plugin would (renamed to CNI_IFNAME, and back). It records every command it was asked
to run, so a test asserts on the plugin's decisions and commands, never on mocks of them.

Change lines (`ip -force -batch -`, `ip link set`, `ethtool -K/-L`) are recorded, not applied:
the tests read back what restore sent.
"""

from __future__ import annotations

import copy
import json
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

from plugin import delegate, device, netns
from plugin.cni import Env
from plugin.config import parse_netconf
from plugin.node import Finished
from plugin.policy import NodePolicy
from tests.support.request_env import use_env

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"
NODE, POD = "node", "pod"


def recorded_link(name: str, mac: str, index: int, pci: str = "") -> dict[str, Any]:
    """A NIC's `ip -d -j link show` object: the recorded ens1f1 (tests/data/identity), renamed;
    with `pci` its PCI parent as real hardware shows it (no veth kind, no peer)."""
    links = json.loads((DATA / "identity" / "node_links_before.json").read_text())
    link = copy.deepcopy(next(x for x in links if x["ifname"] == "ens1f1"))
    link.update(ifname=name, address=mac, ifindex=index, link_index=index)
    if pci:
        for key in ("linkinfo", "link_index", "link_netnsid"):
            link.pop(key, None)
        link.update(parentbus="pci", parentdev=pci)
    return link


def loopback() -> dict[str, Any]:
    links = json.loads((DATA / "identity" / "node_links_before.json").read_text())
    return copy.deepcopy(next(x for x in links if x["ifname"] == "lo"))


class FakeNode:
    """The node (and one pod) as the plugin sees it through its commands."""

    def __init__(self, pod_netns: str) -> None:
        self.pod_netns = pod_netns
        self.links: dict[str, list[dict[str, Any]]] = {NODE: [loopback()], POD: [loopback()]}
        self.addrs: dict[str, list[dict[str, Any]]] = {}   # ifname -> addr_info (node side)
        self.routes: dict[str, list[dict[str, Any]]] = {}  # ifname -> its routes (node side)
        self.defaults: list[dict[str, Any]] = []
        self.commands: list[tuple[str, ...]] = []          # every argv, as the plugin sent it
        self.batches: list[tuple[str, list[str]]] = []     # (namespace, lines) of each change
        self.spawned: list[tuple[str, dict[str, Any]]] = []   # (CNI_COMMAND, the conf sent)
        self.fail_delegate: dict[str, str] = {}            # CNI_COMMAND -> its error message
        self.renamed: dict[str, str] = {}                  # pod name -> the node name it had

    # -- the world -----------------------------------------------------------------------------
    def add_nic(self, name: str, mac: str, pci: str, cidrs: Sequence[str] = (),
                routes: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
        link = recorded_link(name, mac, len(self.links[NODE]) + 1, pci)
        self.links[NODE].append(link)
        self.addrs[name] = [
            {"family": "inet6" if ":" in c else "inet", "local": c.split("/")[0],
             "prefixlen": int(c.split("/")[1]), "scope": "global", "valid_life_time": 4294967295,
             "preferred_life_time": 4294967295} for c in cidrs]
        self.routes[name] = [dict(r) for r in routes]
        return link

    def find(self, ns: str, name: str) -> dict[str, Any] | None:
        return next((x for x in self.links[ns] if x["ifname"] == name), None)

    def move(self, name: str, src: str, dst: str, new_name: str) -> None:
        link = self.find(src, name)
        assert link is not None, f"no {name} in {src}"
        self.links[src].remove(link)
        link["ifname"] = new_name
        self.links[dst].append(link)

    # -- plugin.node.Node ----------------------------------------------------------------------
    def start_soon(self) -> None:
        pass

    def run(self, argv: Sequence[str], stdin: Sequence[str] = (),
            seconds: float = 30.0) -> tuple[int, str, str]:
        self.commands.append((*argv, *(f"<{line}" for line in stdin)))
        ns, words = self._namespace(list(argv))
        if words[0] == "ip":
            return self._ip(ns, words[1:], list(stdin))
        if words[0] == "ethtool":
            return self._ethtool(words[1], words[2])
        if words[0] in ("cat", "tee"):   # /proc/sys/net/ipv6/conf/*/accept_dad
            return 0, "1\n" if words[0] == "cat" else "", ""
        return 127, "", f"{words[0]}: not found"

    def spawn(self, argv: Sequence[str], env: Mapping[str, str], stdin: bytes,
              seconds: float) -> Finished:
        command = env.get("CNI_COMMAND", "")
        if command == "VERSION":
            return Finished(0, json.dumps({"cniVersion": "1.0.0", "supportedVersions": [
                "0.3.0", "0.3.1", "0.4.0", "1.0.0"]}).encode(), b"")
        conf = json.loads(stdin)
        self.spawned.append((command, conf))
        if command in self.fail_delegate:
            return Finished(1, json.dumps({"code": 999, "msg": self.fail_delegate[command]})
                            .encode(), b"")
        ifname = env["CNI_IFNAME"]
        if command == "ADD":
            self.move(conf["device"], NODE, POD, ifname)
            self.renamed[ifname] = conf["device"]
            link = self.find(POD, ifname) or {}
            ips = [{"address": a["address"]} for a in conf.get("ipam", {}).get("addresses", [])]
            return Finished(0, json.dumps({
                "cniVersion": conf["cniVersion"],
                "interfaces": [{"name": ifname, "mac": link.get("address", ""),
                                "sandbox": env["CNI_NETNS"]}],
                "ips": [{**ip, "interface": 0} for ip in ips]}).encode(), b"")
        if command == "DEL" and self.find(POD, ifname) is not None:
            self.move(ifname, POD, NODE, self.renamed.pop(ifname, conf["device"]))
        return Finished(0, b"", b"")

    # -- answers -------------------------------------------------------------------------------
    def _namespace(self, argv: list[str]) -> tuple[str, list[str]]:
        if argv[0] == "nsenter":
            path = argv[1].removeprefix("--net=")
            assert path == self.pod_netns, f"nsenter into an unknown netns {path}"
            return POD, argv[2:]
        if argv[:2] == ["ip", "-n"]:
            return POD, ["ip", *argv[3:]]
        return NODE, argv

    def _ip(self, ns: str, words: list[str], stdin: list[str]) -> tuple[int, str, str]:
        reads = False
        while words and words[0].startswith("-") and words[0] != "-batch":
            reads = reads or words[0] == "-j"
            words = words[1:]
        lines = stdin if words[:2] == ["-batch", "-"] else [" ".join(words)]
        if not reads and words[1:2] == ["show"]:   # `ip link show dev X`: its exit code
            found = self._read(ns, words)
            return (0, "", "") if found else (1, "", f'Device "{words[-1]}" does not exist.\n')
        if not reads:
            self.batches.append((ns, lines))
            return 0, "", ""
        out, err = [], []
        for n, line in enumerate(lines, 1):
            answer = self._read(ns, line.split())
            if answer is None:
                err.append(f'Cannot find device "{line.split()[-1]}"\nCommand failed -:{n}')
            else:
                out.append(json.dumps(answer))
        return (1 if err else 0), "\n".join(out) + "\n", "\n".join(err) + ("\n" if err else "")

    def _read(self, ns: str, words: list[str]) -> list[dict[str, Any]] | None:
        dev = words[words.index("dev") + 1] if "dev" in words else ""
        if words[:2] == ["link", "show"] or words[:2] == ["address", "show"]:
            links = [x for x in self.links[ns] if not dev or x["ifname"] == dev]
            if dev and not links:
                return None
            if words[0] == "address":
                return [{**x, "addr_info": self.addrs.get(x["ifname"], []) if ns == NODE else []}
                        for x in links]
            return copy.deepcopy(links)
        if words[:2] == ["route", "show"]:
            if "default" in words:
                return list(self.defaults)
            return list(self.routes.get(dev, [])) if ns == NODE else []
        if words[:2] == ["nexthop", "show"]:
            return []
        raise AssertionError(f"the fake node has no recording for `ip {' '.join(words)}`")

    def _ethtool(self, flag: str, name: str) -> tuple[int, str, str]:
        if flag == "-k":
            return 0, (DATA / "ethtool_k.txt").read_text(), ""
        if flag == "-l":
            return 0, (DATA / "ethtool_l.txt").read_text(), ""
        if flag in ("-K", "-L"):
            return 0, "", ""
        return 94, "", "Operation not supported"

    # -- what tests read -----------------------------------------------------------------------
    def changes(self, ns: str = NODE) -> list[str]:
        """Every change line sent in `ns`, in order."""
        return [line for where, lines in self.batches if where == ns for line in lines]


# -- one scenario the core tests share -------------------------------------------------------
PCI = "0000:01:00.0"
NETNS = "/var/run/netns/fake-pod"   # the pod's netns (plugin.netns answers for it below)
NETNS_IDS = {"/proc/self/ns/net": "4:4026531840", NETNS: "4:4026532999"}
CIDRS = ("10.20.30.40/24", "fd00:20::40/64")


def a_node_with_one_nic(tmp_path, monkeypatch):
    """A node with one PCI NIC (ens1f0, two addresses), its sysfs, a state dir and a
    host-device binary (never run: the fake node answers for it)."""
    sysfs = tmp_path / "sys"
    d = sysfs / "bus" / "pci" / "devices" / PCI
    (d / "net" / "ens1f0").mkdir(parents=True)
    (sysfs / "bus" / "pci" / "drivers" / "ionic").mkdir(parents=True)
    os.symlink(sysfs / "bus" / "pci" / "drivers" / "ionic", d / "driver")
    use_env(monkeypatch, device.SYSFS_ENV, str(sysfs))
    use_env(monkeypatch, delegate.FALLBACK_ENV, "")
    # The kernel's namespace files as this node has them: its own netns and the pod's (nsfs
    # cannot be faked with a file, and a real second netns needs privilege).
    monkeypatch.setattr(netns, "identity", lambda path: NETNS_IDS.get(path, ""))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "host-device").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "host-device").chmod(0o755)
    fake = FakeNode(NETNS)
    fake.add_nic("ens1f0", "b2:9b:cd:4b:2e:a0", PCI, CIDRS,
                 [{"dst": "10.99.0.0/16", "gateway": "10.20.30.1", "dev": "ens1f0",
                   "protocol": "static", "scope": "global", "flags": [], "table": "main"}])
    state = tmp_path / "state"
    return fake, state, (str(bin_dir),)


def conf(state, **keys):
    """The NAD for it, with node policy's stateDir."""
    raw = {"cniVersion": "1.0.0", "name": "amd-nic", "type": "amd-host-device",
           "deviceID": PCI, **keys}
    return parse_netconf(raw, NodePolicy(state_dir=str(state)))


def env(cni_path, container="c1", command="ADD"):
    """The runtime's CNI environment for attachment <container>/net1."""
    return Env(command, container, NETNS, "net1", {}, cni_path)
