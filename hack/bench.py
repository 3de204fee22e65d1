#!/usr/bin/env python3
"""`make bench`: our shipped binary side by side with the bare host-device, on a simulated node.

- Interleaved rounds (bare, in-process, daemon, bare, ...) of ADD, DEL and the full cycle, with
  the same NIC, the same addresses (bare host-device gets the equivalent static IPAM config)
  and the same pod; medians, spread (p10-p90), and the ratio to bare per phase. "in-process"
  is the plugin with no daemon on the node; "daemon" is the same binary as a shim in front of
  `amd-host-device daemon` running in the node's netns (thick mode).
- Start-up (VERSION, answered by the shim itself) and peak RSS of each.
- A profile of where our in-process ADD and DEL spend their time (AMD_HOST_DEVICE_PROFILE=1).
- Concurrency through the daemon: N NICs x M rounds of parallel ADD then parallel DEL:
  throughput, failures, and whether any record or any address was lost.
- Time to a usable network: from ADD's start until the pod's first ping6 to its peer succeeds
  (IPv6 DAD in the pod is what makes this differ from ADD's own time), ours and bare.
- containerd (the kubelet's path): RunPodSandbox and StopPodSandbox over CRI with our plugin,
  interleaved with the same for a bare host-device+static conflist on the same NIC
  (tests/support/containerd_cri.py, the harness tests/runtime/test_containerd_cri.py uses).

The benchmark process moves itself into the node's netns (setns), so neither side pays for
`ip netns exec`. Results: bench-results/bench.json and a table on stdout. No test asserts any
of these numbers.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.support.simnode import REPO, SimNode, sh

CLONE_NEWNET = 0x40000000
HOST_DEVICE = "/usr/lib/cni/host-device"


def enter_netns(name: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns failed")
    finally:
        os.close(fd)


def run(argv: list[str], env: dict[str, str], stdin: bytes) -> tuple[float, int, int, bytes, bytes]:
    """(wall ms, exit code, peak RSS KiB, stdout, stderr) of one plugin invocation.

    Reaped with wait4 to read that one process's peak RSS (its children, ip and host-device,
    are separate processes and not counted)."""
    started = time.perf_counter()
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env)
    assert p.stdin and p.stdout and p.stderr
    p.stdin.write(stdin)
    p.stdin.close()
    out = p.stdout.read()   # our outputs are far below a pipe's capacity: no deadlock
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    wall = (time.perf_counter() - started) * 1000
    p.returncode = os.waitstatus_to_exitcode(status)
    p.stdout.close()
    p.stderr.close()
    return wall, p.returncode, usage.ru_maxrss, out, err


class Runner:
    """Runs a plugin like a runtime on the node would (we are in the node's netns)."""

    def __init__(self, node: SimNode, plugin: str, profile: bool = False,
                 daemon: bool = False) -> None:
        self.node, self.plugin = node, plugin
        self.base = {"PATH": os.environ["PATH"], "CNI_PATH": "/usr/lib/cni",
                     "AMD_HOST_DEVICE_SYSFS": node.sysfs,
                     "AMD_HOST_DEVICE_STATE_DIR": node.state_dir,
                     "AMD_HOST_DEVICE_NODE_CONFIG": node.policy_path,
                     # in process: a socket path where nothing listens
                     "AMD_HOST_DEVICE_SOCKET": node.socket if daemon else node.socket + ".none"}
        if profile:
            self.base["AMD_HOST_DEVICE_PROFILE"] = "1"

    def call(self, command: str, conf: dict[str, Any], cid: str = "", netns: str = "",
             ifname: str = "") -> tuple[float, int, int, bytes, bytes]:
        env = dict(self.base, CNI_COMMAND=command)
        if cid:
            env.update(CNI_CONTAINERID=cid, CNI_NETNS=netns, CNI_IFNAME=ifname,
                       CNI_ARGS="IgnoreUnknown=true;K8S_POD_NAMESPACE=default;K8S_POD_NAME=bench")
        wall, rc, rss, out, err = run([self.plugin], env, json.dumps(conf).encode())
        if rc != 0:
            raise RuntimeError(f"{os.path.basename(self.plugin)} {command} failed: {out!r} "
                               f"{err[-400:]!r}")
        return wall, rc, rss, out, err


def stats(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    q = statistics.quantiles(values, n=10) if len(values) >= 2 else [values[0]] * 9
    return {"median": round(statistics.median(values), 2), "p10": round(q[0], 2),
            "p90": round(q[-1], 2), "n": len(values)}


def restore_bare(node: SimNode, nic: Any) -> None:
    """Bare host-device gives the NIC back bare; put its addresses back (not timed)."""
    sh("ip", "addr", "replace", nic.v4, "dev", nic.name)
    sh("ip", "addr", "replace", nic.v6, "dev", nic.name, "nodad")
    sh("ip", "link", "set", nic.name, "up")


SIDES = ("bare", "in-process", "daemon")


def side_by_side(node: SimNode, plugin: str, rounds: int) -> dict[str, Any]:
    nic = node.nics[0]
    pod = node.netns_path(node.add_pod())
    runners = {"bare": Runner(node, HOST_DEVICE), "in-process": Runner(node, plugin),
               "daemon": Runner(node, plugin, daemon=True)}
    ours_conf = node.conf(nic.pci, "1.0.0")
    bare_conf = {"cniVersion": "1.0.0", "name": "bench", "type": "host-device",
                 "device": nic.name, "ipam": {"type": "static", "addresses": [
                     {"address": nic.v4}, {"address": nic.v6}]}}
    times: dict[str, dict[str, list[float]]] = {s: {"ADD": [], "DEL": [], "cycle": []}
                                                for s in SIDES}
    rss = dict.fromkeys(SIDES, 0)
    for i in range(rounds + 2):  # two warm-up rounds, not counted
        for side, runner in runners.items():
            conf = bare_conf if side == "bare" else ours_conf
            add = runner.call("ADD", conf, f"bench{i}", pod, "net1")
            delete = runner.call("DEL", conf, f"bench{i}", pod, "net1")
            if side == "bare":
                restore_bare(node, nic)
            if i >= 2:
                times[side]["ADD"].append(add[0])
                times[side]["DEL"].append(delete[0])
                times[side]["cycle"].append(add[0] + delete[0])
                rss[side] = max(rss[side], add[2], delete[2])
    version = {side: stats([runners[side].call("VERSION", {"cniVersion": "1.0.0"})[0]
                            for _ in range(rounds)]) for side in ("bare", "in-process")}
    result: dict[str, Any] = {"phases": {}, "version": version, "peak_rss_kib": rss}
    for phase in ("ADD", "DEL", "cycle"):
        row = {side: stats(times[side][phase]) for side in SIDES}
        bare = row["bare"]["median"]
        row["ratio"] = {side: round(row[side]["median"] / bare, 2) for side in SIDES[1:]}
        result["phases"][phase] = row
    node.remove_pod(node.pods[-1])
    return result


def profile(node: SimNode, plugin: str, rounds: int) -> dict[str, dict[str, float]]:
    nic = node.nics[0]
    pod = node.netns_path(node.add_pod())
    runner = Runner(node, plugin, profile=True)
    buckets: dict[str, dict[str, list[float]]] = {"ADD": {}, "DEL": {}}
    for i in range(rounds):
        for command in ("ADD", "DEL"):
            wall, _, _, _, err = runner.call(command, node.conf(nic.pci), f"prof{i}", pod, "net1")
            line = [x for x in err.decode().splitlines() if "amd-host-device profile " in x][-1]
            found = json.loads(line.split("amd-host-device profile ", 1)[1])
            found["process start + interpreter + exit"] = wall - found["total in process"]
            found["wall (as the runtime sees it)"] = wall
            for key, value in found.items():
                buckets[command].setdefault(key, []).append(value)
    node.remove_pod(node.pods[-1])
    return {cmd: {k: round(statistics.median(v), 2) for k, v in b.items()}
            for cmd, b in buckets.items()}


def concurrency(plugin: str, nics: int, rounds: int) -> dict[str, Any]:
    with SimNode() as node:
        for i in range(1, nics + 1):
            node.add_nic(i)
        pods = [node.netns_path(node.add_pod()) for _ in range((nics + 1) // 2)]
        node.start_daemon(plugin=plugin)
        enter_netns(node.node)
        runner = Runner(node, plugin, daemon=True)
        jobs = [(nic, f"p{i // 2}", pods[i // 2], f"net{i % 2 + 1}")
                for i, nic in enumerate(node.nics)]
        failures, lost, latencies = 0, 0, []
        attachments = os.path.join(node.state_dir, "attachments")

        def one(command: str, rnd: int, job: Any) -> float:
            nic, pid, pod, ifname = job
            return runner.call(command, node.conf(nic.pci), f"{pid}r{rnd}", pod, ifname)[0]

        started = time.perf_counter()
        with ThreadPoolExecutor(nics) as pool:
            for rnd in range(rounds):
                for command in ("ADD", "DEL"):
                    futures = [pool.submit(one, command, rnd, j) for j in jobs]
                    for f in futures:
                        try:
                            latencies.append(f.result())
                        except RuntimeError:
                            failures += 1
                    recorded = len(os.listdir(attachments)) if os.path.isdir(attachments) else 0
                    lost += abs(recorded - (nics if command == "ADD" else 0))
                lost += sum(node.addresses(node.node, n.name) != {n.v4, n.v6} for n in node.nics)
        elapsed = time.perf_counter() - started
        enter_netns_root()
        node.stop_daemon()
    ops = nics * rounds * 2
    return {"nics": nics, "rounds": rounds, "operations": ops, "seconds": round(elapsed, 2),
            "ops_per_second": round(ops / elapsed, 1), "failures": failures,
            "lost_records_or_addresses": lost, "latency_ms": stats(latencies)}


_ROOT_NS_FD: int | None = None
USABLE_LIMIT_SECONDS = 10.0


def _first_ping6(pod: str, peer: str) -> float:
    """Seconds until one ping6 from the pod to the peer answers (a tentative source address
    fails at once, so this polls as fast as ping starts), capped at USABLE_LIMIT_SECONDS."""
    started = time.perf_counter()
    while time.perf_counter() - started < USABLE_LIMIT_SECONDS:
        if subprocess.run(["nsenter", f"--net={pod}", "ping", "-6", "-n", "-c1", "-W1", peer],
                          capture_output=True, check=False).returncode == 0:
            break
    return time.perf_counter() - started


def usable_network(plugin: str, rounds: int) -> dict[str, Any]:
    """ms from ADD's start until the pod pings its peer over IPv6: bare host-device (static
    IPAM, DAD in the pod) and ours in process, interleaved on the same NIC and pod."""
    times: dict[str, dict[str, list[float]]] = {s: {"ADD": [], "usable": []}
                                                for s in ("bare", "in-process")}
    with SimNode() as node:
        nic = node.add_nic(1)
        pod = node.netns_path(node.add_pod())
        enter_netns(node.node)
        try:
            runners = {"bare": Runner(node, HOST_DEVICE), "in-process": Runner(node, plugin)}
            ours_conf = node.conf(nic.pci, "1.0.0")
            bare_conf = {"cniVersion": "1.0.0", "name": "bench", "type": "host-device",
                         "device": nic.name, "ipam": {"type": "static", "addresses": [
                             {"address": nic.v4}, {"address": nic.v6}]}}
            for i in range(rounds + 1):  # one warm-up round, not counted
                for side, runner in runners.items():
                    conf = bare_conf if side == "bare" else ours_conf
                    started = time.perf_counter()
                    runner.call("ADD", conf, f"usable{i}", pod, "net1")
                    added = time.perf_counter()
                    usable = added - started + _first_ping6(pod, nic.peer_v6)
                    runner.call("DEL", conf, f"usable{i}", pod, "net1")
                    if side == "bare":
                        restore_bare(node, nic)
                    if i >= 1:
                        times[side]["ADD"].append((added - started) * 1000)
                        times[side]["usable"].append(usable * 1000)
        finally:
            enter_netns_root()
    return {side: {phase: stats(v) for phase, v in row.items()} for side, row in times.items()}


def usable_table(rows: dict[str, Any]) -> list[str]:
    lines = ["| time to a usable network (ADD start to the first ping6 answered) | bare "
             "host-device+static median (p10-p90) ms | in-process median (p10-p90) ms |",
             "| --- | --- | --- |"]
    for phase, what in (("ADD", "ADD returns"), ("usable", "IPv6 usable")):
        b, o = rows["bare"][phase], rows["in-process"][phase]
        lines.append(f"| {what} | {b['median']} ({b['p10']}-{b['p90']}) | {o['median']} "
                     f"({o['p10']}-{o['p90']}) |")
    return lines


def containerd_side_by_side(plugin: str, rounds: int) -> dict[str, Any]:
    """RunPodSandbox / StopPodSandbox wall time (ms) as the kubelet sees it, ours vs bare."""
    from tests.support.containerd_cri import Containerd

    times: dict[str, dict[str, list[float]]] = {s: {"RunPodSandbox": [], "StopPodSandbox": []}
                                                for s in ("ours", "bare")}
    with SimNode() as node:
        nic = node.add_nic(1)
        ours = {"cniVersion": "1.0.0", "name": "bench-ours", "plugins": [
            {k: v for k, v in node.conf(nic.pci).items() if k not in ("cniVersion", "name")}]}
        bare = {"cniVersion": "1.0.0", "name": "bench-bare", "plugins": [
            {"type": "host-device", "device": nic.name, "ipam": {"type": "static", "addresses": [
                {"address": nic.v4}, {"address": nic.v6}]}}]}
        with Containerd(node, plugin=plugin) as c:
            c.start()
            for i in range(rounds + 2):  # two warm-up rounds, not counted
                for side, conflist in (("ours", ours), ("bare", bare)):
                    c.use_network(conflist)
                    node.sync_sysfs()
                    started = time.perf_counter()
                    sid = c.run_pod(f"bench{i}{side}")
                    ran = time.perf_counter()
                    c.stop_pod(sid)
                    stopped = time.perf_counter()
                    c.remove(sid)
                    if side == "bare":  # host-device gives it back bare (not timed)
                        for args in (("addr", "replace", nic.v4, "dev", nic.name),
                                     ("addr", "replace", nic.v6, "dev", nic.name, "nodad"),
                                     ("link", "set", nic.name, "up")):
                            sh("ip", "-n", node.node, *args)
                    if i >= 2:
                        times[side]["RunPodSandbox"].append((ran - started) * 1000)
                        times[side]["StopPodSandbox"].append((stopped - ran) * 1000)
    result: dict[str, Any] = {}
    for phase in ("RunPodSandbox", "StopPodSandbox"):
        o, b = stats(times["ours"][phase]), stats(times["bare"][phase])
        result[phase] = {"ours": o, "bare": b, "ratio": round(o["median"] / b["median"], 2)}
    return result


def containerd_table(rows: dict[str, Any]) -> list[str]:
    lines = ["| containerd CRI call | ours median (p10-p90) ms | bare host-device+static median "
             "(p10-p90) ms | ratio |", "| --- | --- | --- | --- |"]
    for phase, row in rows.items():
        o, b = row["ours"], row["bare"]
        lines.append(f"| {phase} | {o['median']} ({o['p10']}-{o['p90']}) | {b['median']} "
                     f"({b['p10']}-{b['p90']}) | {row['ratio']} |")
    return lines


def enter_netns_root() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    assert _ROOT_NS_FD is not None
    if libc.setns(_ROOT_NS_FD, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns back failed")


def table(r: dict[str, Any]) -> str:
    s = r["side_by_side"]

    def cell(x: dict[str, float]) -> str:
        return f"{x['median']} ({x['p10']}-{x['p90']})"

    lines = ["| phase | bare host-device ms | in-process ms | ratio | daemon (thick) ms | ratio |",
             "| --- | --- | --- | --- | --- | --- |"]
    for phase, row in s["phases"].items():
        lines.append(f"| {phase} | {cell(row['bare'])} | {cell(row['in-process'])} | "
                     f"{row['ratio']['in-process']} | {cell(row['daemon'])} | "
                     f"{row['ratio']['daemon']} |")
    v = s["version"]
    lines.append(f"| start-up (VERSION) | {cell(v['bare'])} | {cell(v['in-process'])} | "
                 f"{round(v['in-process']['median'] / v['bare']['median'], 1)} | "
                 "(the shim answers VERSION itself) | |")
    rss = s["peak_rss_kib"]
    lines.append(f"| peak RSS of the process the runtime runs | {rss['bare'] // 1024} MiB | "
                 f"{rss['in-process'] // 1024} MiB | | {rss['daemon'] // 1024} MiB (shim) | |")
    lines.append("")
    lines.append("Medians (p10-p90) over interleaved rounds; ratio = median / bare median.")
    lines += ["", "Where the in-process time goes (medians, ms):", "",
              "| bucket | ADD | DEL |", "| --- | --- | --- |"]
    p = r["profile"]
    keys = list(dict.fromkeys([*p["ADD"], *p["DEL"]]))
    for key in keys:
        lines.append(f"| {key} | {p['ADD'].get(key, '')} | {p['DEL'].get(key, '')} |")
    c = r["concurrency"]
    lines += ["", f"Concurrency through the daemon: {c['nics']} NICs x {c['rounds']} rounds of "
              f"parallel ADD then DEL: {c['operations']} operations in {c['seconds']} s "
              f"({c['ops_per_second']} ops/s), {c['failures']} failures, "
              f"{c['lost_records_or_addresses']} lost records "
              f"or addresses; latency median {c['latency_ms']['median']} ms, p90 "
              f"{c['latency_ms']['p90']} ms."]
    if "usable" in r:
        lines += ["", *usable_table(r["usable"])]
    if "containerd" in r:
        lines += ["", *containerd_table(r["containerd"])]
    return "\n".join(lines)


def main() -> int:
    global _ROOT_NS_FD
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--plugin", default=os.path.join(REPO, "build", "bundle", "bin",
                                                    "amd-host-device"))
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--profile-rounds", type=int, default=10)
    p.add_argument("--nics", type=int, default=8)
    p.add_argument("--concurrency-rounds", type=int, default=20)
    p.add_argument("--containerd-rounds", type=int, default=10,
                   help="RunPodSandbox/StopPodSandbox rounds through containerd (0: skip)")
    p.add_argument("--only-containerd", action="store_true", help="the containerd row alone")
    p.add_argument("--usable-rounds", type=int, default=10,
                   help="rounds of ADD until the pod pings its peer over IPv6 (0: skip)")
    p.add_argument("--only-usable", action="store_true",
                   help="the time-to-a-usable-network rows alone")
    p.add_argument("--out", default=os.path.join(REPO, "bench-results"))
    args = p.parse_args()
    args.plugin = os.path.abspath(args.plugin)  # containerd links to it from its own dir
    if not os.access(args.plugin, os.X_OK):
        print(f"{args.plugin} is missing: run `make bundle` first", file=sys.stderr)
        return 2
    _ROOT_NS_FD = os.open("/proc/self/ns/net", os.O_RDONLY)
    results: dict[str, Any] = {"plugin": args.plugin, "host_device": HOST_DEVICE,
                               "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if args.only_usable:
        print("\n".join(usable_table(usable_network(args.plugin, args.usable_rounds or 3))))
        return 0
    if args.only_containerd:
        rows = containerd_side_by_side(args.plugin, args.containerd_rounds or 10)
        print("\n".join(containerd_table(rows)))
        return 0
    with SimNode() as node:
        node.add_nic(1)
        node.start_daemon(plugin=args.plugin)
        enter_netns(node.node)
        try:
            results["side_by_side"] = side_by_side(node, args.plugin, args.rounds)
            results["profile"] = profile(node, args.plugin, args.profile_rounds)
        finally:
            enter_netns_root()
            node.stop_daemon()
    results["concurrency"] = concurrency(args.plugin, args.nics, args.concurrency_rounds)
    if args.usable_rounds > 0:
        results["usable"] = usable_network(args.plugin, args.usable_rounds)
    if args.containerd_rounds > 0:
        results["containerd"] = containerd_side_by_side(args.plugin, args.containerd_rounds)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench.json"), "w") as f:
        json.dump(results, f, indent=2)
    text = table(results)
    with open(os.path.join(args.out, "bench.md"), "w") as f:
        f.write(text + "\n")
    print(text)
    print(f"\n(results: {args.out}/bench.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
