"""`amd-host-device doctor [--json]`: is this node ready for the plugin? One line per check,
✓ or ✗ with the fix; exit 0 only when every check passes (a readiness probe can run it).

Informational lines (·) never fail: e.g. no daemon socket on a node that runs in-process.
The JSON schema is documented in docs/operations.md.
"""

from __future__ import annotations

import argparse
import enum
import json
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from plugin import CNI_VERSIONS, backend, delegate, device, files, policy, tools
from plugin.cni import version_key
from plugin.errors import CniError
from plugin.node import local as this_node

SCHEMA = "amd-host-device/doctor/v1"
CONF_DIR_ENV = "AMD_HOST_DEVICE_CNI_CONF_DIR"
DEFAULT_CONF_DIR = "/etc/cni/net.d"
PLUGIN_TYPE = "amd-host-device"
AMD_VENDOR = "0x1dd8"
# The newest result version each runtime's libcni parses (README: runtime compatibility).
# containerd < 2.0 ships libcni < 1.2, which fails a 1.1.0 result with "unsupported CNI result
# version" (measured with 1.6.20); 2.x ships libcni 1.2 (CNI 1.1.0).
_CONTAINERD_MAX = (((2, 0), "1.1.0"), ((0, 0), "1.0.0"))


class Status(enum.Enum):
    PASS = "pass"
    FAIL = "fail"
    INFO = "info"   # worth knowing, never a failure


_MARK = {Status.PASS: "✓", Status.FAIL: "✗", Status.INFO: "·"}


@dataclass(frozen=True)
class Check:
    name: str                 # stable id, e.g. "ip-json"
    status: Status
    summary: str
    fix: str = ""
    details: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status.value, "summary": self.summary,
                "fix": self.fix, "details": list(self.details)}


@dataclass(frozen=True)
class Node:
    """Where to look: all overridable, so tests build a node that fails one check."""

    cni_path: tuple[str, ...] = ()
    conf_dir: str = DEFAULT_CONF_DIR
    state_dir: str = ""          # "" = the node policy's
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))


# -- tools ---------------------------------------------------------------------------------------
def _copy(name: str, node: Node) -> str:
    """Which copy of a tool runs (plugin/tools.py): "bundled <path>" or "node <path>"."""
    return tools.tool(name).describe(node.environ.get("PATH"))


def _tool_fix(name: str, package: str) -> str:
    if tools.tool(name).bundled:
        return "the bundle is damaged: reinstall it (the DaemonSet's installer)"
    return f"install {package} on the node"


def _tool_failed(check: str, name: str, node: Node, e: backend.CommandFailed,
                 package: str) -> Check:
    why = "not found" if e.exit_code == 127 else f"failed: {e}"[:200]
    return Check(check, Status.FAIL, f"{name} ({_copy(name, node)}): {why}",
                 _tool_fix(name, package))


def check_ip(node: Node) -> Check:
    fix = _tool_fix("ip", "iproute2 >= 4.13 (JSON output)")
    try:
        out = backend.run(this_node(), ["ip", "-j", "link", "show", "dev", "lo"])
        json.loads(out)
    except backend.CommandFailed as e:
        if e.exit_code == 127:
            return _tool_failed("ip-json", "ip", node, e, "iproute2 >= 4.13 (JSON output)")
        return Check("ip-json", Status.FAIL, f"ip ({_copy('ip', node)}): `ip -j` failed: "
                     f"{e}"[:200], fix)
    except ValueError:
        return Check("ip-json", Status.FAIL, f"ip ({_copy('ip', node)}): `ip -j` does not "
                     "print JSON", fix)
    try:
        version = backend.run(this_node(), ["ip", "-V"]).strip()
    except backend.CommandFailed:
        version = "ip"
    return Check("ip-json", Status.PASS, f"ip ({_copy('ip', node)}): {version}: supports -j "
                 "(JSON)")


def _check_version(tool: str, package: str, node: Node) -> Check:
    """`tool --version` runs (it needs no privilege, so the installer can ask too)."""
    try:
        version = backend.run(this_node(), [tool, "--version"]).strip()
    except backend.CommandFailed as e:
        return _tool_failed(tool, tool, node, e, package)
    return Check(tool, Status.PASS, f"{tool} ({_copy(tool, node)}): {version}")


def check_ethtool(node: Node) -> Check:
    """Without ethtool the offloads and channels a pod changed cannot be recorded, nor given
    back: a NIC would come home changed."""
    return _check_version("ethtool", "ethtool", node)


def check_nsenter(node: Node) -> Check:
    """nsenter runs the pod-side commands of a netns that is not a named one (and execs the
    same copy of ip after it)."""
    return _check_version("nsenter", "util-linux", node)


def check_sh(node: Node) -> Check:
    """The command shell (plugin/node.py) that runs every command above."""
    from plugin import node as shell

    try:
        shell.current()
    except shell.ShellGone as e:
        return Check("sh", Status.FAIL, f"sh: {e}"[:300], _tool_fix("sh", "a POSIX /bin/sh"))
    return Check("sh", Status.PASS, f"sh ({_copy('sh', node)}): runs the commands")


def check_host_device(node: Node) -> Check:
    dirs = delegate.search_dirs(node.cni_path)
    fix = ("install containernetworking-plugins (Debian) or the reference plugins into "
           "/opt/cni/bin; the DaemonSet's installer copies its own where the node has none")
    try:
        with tempfile.TemporaryDirectory(prefix="ahd-doctor-") as cache:
            found = delegate.locate(this_node(), node.cni_path, cache)
    except CniError as e:
        return Check("host-device", Status.FAIL, f"host-device: {e.msg}", fix,
                     (f"searched {':'.join(dirs) or 'nothing (CNI_PATH and the fallback dirs are empty)'}",))
    common = [v for v in CNI_VERSIONS if v in found.versions]
    summary = f"host-device: {found.path} speaks {', '.join(found.versions)}"
    if not common:
        return Check("host-device", Status.FAIL, summary + " (none of ours)",
                     f"install host-device that speaks one of {', '.join(CNI_VERSIONS)}")
    return Check("host-device", Status.PASS, summary)


# -- state and policy ----------------------------------------------------------------------------
def _policy(node: Node) -> tuple[policy.NodePolicy | None, CniError | None]:
    try:
        return policy.load(node.environ), None
    except CniError as e:
        return None, e


def check_state_dir(node: Node) -> Check:
    loaded, _ = _policy(node)
    root = node.state_dir or (loaded.state_dir if loaded else policy.DEFAULT_STATE_DIR)
    problems = []
    for path in (root, *(os.path.join(root, d) for d in ("attachments", "devices", "locks"))):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        except OSError as e:
            problems.append(f"{path}: {e.strerror}")
            continue
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            problems.append(f"{path} is not a directory (a symlink or a file)")
        elif st.st_uid != 0:
            problems.append(f"{path} is owned by uid {st.st_uid}, not root")
        elif st.st_mode & 0o077:
            problems.append(f"{path} has mode {stat.S_IMODE(st.st_mode):04o}, not 0700")
    if problems:
        return Check("state-dir", Status.FAIL, f"state dir {root}: {problems[0]}",
                     f"chown -R root:root {root} && chmod 700 {root} {root}/*  "
                     "(or remove what is not a directory)",
                     tuple(problems) if len(problems) > 1 else ())
    if not os.path.isdir(root):
        return Check("state-dir", Status.PASS, f"state dir {root}: absent; the first ADD "
                     "creates it (root, 0700)")
    return _store_format(root)


def _store_format(root: str) -> Check:
    """The layout's format (plugin/formats.py): one a newer release made is left untouched,
    so nothing on this node can be given back until that release runs again."""
    from plugin import formats

    path = os.path.join(root, formats.STORE_FILE)
    try:
        version = formats.check_store(files.read_regular(path, 4096))
    except formats.Newer as e:
        return Check("state-dir", Status.FAIL, f"state dir {root}: {e.msg}",
                     "roll the DaemonSet forward to that release (docs/deploy.md, Upgrading)")
    except (files.NotRegular, OSError, ValueError, RecursionError) as e:
        return Check("state-dir", Status.PASS, f"state dir {root}: root, 0700; {path} is "
                     f"unreadable ({str(e)[:80]}): the next ADD or DEL sets it aside and "
                     "writes it again")
    return Check("state-dir", Status.PASS, f"state dir {root}: root, 0700, format {version}")


def _policy_path(node: Node) -> str:
    return node.environ.get(policy.PATH_ENV) or policy.DEFAULT_PATH


def check_policy(node: Node) -> Check:
    path = _policy_path(node)
    loaded, error = _policy(node)
    if error is not None:
        return Check("node-policy", Status.FAIL, error.msg, error.details or f"fix {path}")
    if loaded is None or not loaded.source:
        return Check("node-policy", Status.FAIL, f"node policy {path}: absent",
                     "write it (`{}` keeps every default); the DaemonSet's installer writes "
                     "it from its ConfigMap")
    st = os.stat(loaded.source)
    if st.st_uid != 0 or st.st_mode & 0o022:
        return Check("node-policy", Status.FAIL,
                     f"node policy {loaded.source}: writable by someone other than root "
                     f"(uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o})",
                     f"chown root:root {loaded.source} && chmod 644 {loaded.source}")
    return Check("node-policy", Status.PASS, f"node policy {loaded.source}: valid")


def _thick_expected(node: Node, loaded: policy.NodePolicy) -> bool:
    """The admin asked for the daemon: the node policy names its socket. (The env override
    only moves the socket, for tests and the daemon's own container.)"""
    if not loaded.source:
        return False
    try:
        data = files.read_regular(loaded.source, 1 << 16, follow=True)
        return data is not None and "socket" in json.loads(data)
    except (OSError, ValueError, TypeError, RecursionError, files.NotRegular):
        return False


def check_daemon(node: Node) -> Check:
    loaded, _ = _policy(node)
    loaded = loaded or policy.NodePolicy()
    path = loaded.socket
    fix = ("the DaemonSet runs the daemon: kubectl -n kube-system logs ds/amd-host-device; "
           f"a stale {path} with no daemon behind it can be removed (the plugin then runs "
           "in process)")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if _thick_expected(node, loaded):
            return Check("daemon", Status.FAIL, f"daemon: no socket at {path}", fix)
        return Check("daemon", Status.INFO, f"daemon: not running ({path} absent): "
                     "in-process mode")
    except OSError as e:
        return Check("daemon", Status.FAIL, f"daemon: {path}: {e.strerror}", fix)
    if not stat.S_ISSOCK(st.st_mode):
        return Check("daemon", Status.FAIL, f"daemon: {path} is not a socket", fix)
    from plugin import daemon_client

    if not daemon_client.ping(path):
        return Check("daemon", Status.FAIL, f"daemon: {path} does not answer a ping", fix)
    return Check("daemon", Status.PASS, f"daemon: {path} answers")


# -- NICs ----------------------------------------------------------------------------------------
def _read(path: str) -> str:
    try:
        data = files.read_regular(path, 4096, follow=True)
    except (OSError, files.NotRegular):
        return ""
    return (data or b"")[:64].decode(errors="replace").strip()


def _ip_list(*args: str) -> list[dict[str, Any]]:
    try:
        found = json.loads(backend.run(this_node(), ["ip", "-j", *args]) or "[]", strict=False)
    except (backend.CommandFailed, ValueError):
        return []
    return [x for x in found if isinstance(x, dict)] if isinstance(found, list) else []


def check_nics(node: Node) -> Check:
    root = os.path.join(device.sysfs_root(), "bus", "pci", "devices")
    try:
        functions = sorted(os.listdir(root))
    except OSError:
        functions = []
    addresses = {x.get("ifname"): [f"{a.get('local')}/{a.get('prefixlen')}"
                                   for a in x.get("addr_info", []) if a.get("scope") != "link"]
                 for x in _ip_list("address", "show")}
    uplinks = {r.get("dev") for fam in ("-4", "-6") for r in _ip_list(fam, "route", "show",
                                                                       "default")}
    lines = []
    for bdf in functions:
        here = os.path.join(root, bdf)
        klass = _read(os.path.join(here, "class"))
        if not (klass.startswith("0x02") or os.path.isdir(os.path.join(here, "net"))):
            continue  # not a network function
        try:
            netdevs = sorted(os.listdir(os.path.join(here, "net")))
        except OSError:
            netdevs = []
        vendor = _read(os.path.join(here, "vendor"))
        try:
            driver = os.path.basename(os.readlink(os.path.join(here, "driver")))
        except OSError:
            driver = "no driver"
        marks = " [AMD]" if vendor == AMD_VENDOR else ""
        if not netdevs:
            lines.append(f"{bdf}{marks} {driver}: no netdev on the node (in a pod? see list)")
        for name in netdevs:
            flag = ("  ! carries the node's default route: ADD refuses it unless the node "
                    "policy sets allowDefaultRouteDevice") if name in uplinks else ""
            addrs = ",".join(addresses.get(name, [])) or "no addresses"
            lines.append(f"{bdf}{marks} {driver} {name} {addrs}{flag}")
    if not lines:
        return Check("pci-nics", Status.FAIL, f"PCI NICs: none under {root}",
                     "load the NIC's driver (ionic for AMD NICs) and check the device is "
                     "visible in this network namespace")
    amd = sum(" [AMD]" in x for x in lines)
    return Check("pci-nics", Status.PASS, f"PCI NICs: {len(lines)} ({amd} AMD)",
                 details=tuple(lines))


# -- CNI configs ---------------------------------------------------------------------------------
def _runtime_max(node: Node) -> tuple[str, str] | None:
    """(runtime, newest result version its libcni parses), for runtimes in the table."""
    found = shutil.which("containerd", path=node.environ.get("PATH"))
    if not found:
        return None
    try:
        words = backend.run(this_node(), [found, "--version"]).split()
    except backend.CommandFailed:
        return None
    for word in words:
        parts = word.lstrip("v").split("~")[0].split("-")[0].split(".")
        if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
            have = (int(parts[0]), int(parts[1]))
            newest = next(v for at_least, v in _CONTAINERD_MAX if have >= at_least)
            return f"containerd {'.'.join(parts[:3])}", newest
    return None


def _names_us(conf: Any) -> bool:
    if not isinstance(conf, dict):
        return False
    plugins = conf.get("plugins")
    if isinstance(plugins, list):
        return any(isinstance(p, dict) and p.get("type") == PLUGIN_TYPE for p in plugins)
    return conf.get("type") == PLUGIN_TYPE


def check_cni_configs(node: Node) -> Check:
    d = node.conf_dir
    try:
        names = sorted(n for n in os.listdir(d) if n.endswith((".conf", ".conflist", ".json")))
    except OSError as e:
        return Check("cni-configs", Status.PASS, f"CNI configs: {d}: {e.strerror}; none "
                     "name amd-host-device")
    runtime = _runtime_max(node)
    found, problems, unreadable = [], [], []
    for name in names:
        path = os.path.join(d, name)
        # Symlinks are followed (a conf dir may link to configs kept elsewhere, as libcni
        # reads them), but only a regular file is read and a FIFO never blocks the check.
        try:
            raw = files.read_regular(path, 1 << 20, follow=True)
        except files.NotRegular as e:
            unreadable.append(f"{name}: {str(e).removeprefix(path + ' ')}")
            continue
        except OSError as e:
            unreadable.append(f"{name}: cannot read it ({e.strerror})")
            continue
        if raw is None:
            continue
        if PLUGIN_TYPE.encode() not in raw:
            continue
        try:
            conf = json.loads(raw)
        except (ValueError, RecursionError):
            problems.append(f"{name}: names {PLUGIN_TYPE} but is not valid JSON")
            continue
        if not _names_us(conf):
            continue
        version = conf.get("cniVersion")
        found.append(f"{name}: cniVersion {version}")
        if version not in CNI_VERSIONS:
            problems.append(f"{name}: cniVersion {version!r} is not one we speak "
                            f"({', '.join(CNI_VERSIONS)})")
        elif runtime and version_key(version) > version_key(runtime[1]):
            problems.append(f"{name}: cniVersion {version} but {runtime[0]} parses results "
                            f"only up to {runtime[1]}")
    who = f"; runtime {runtime[0]} parses up to {runtime[1]}" if runtime else ""
    if unreadable:
        return Check("cni-configs", Status.FAIL, f"CNI configs in {d}: {unreadable[0]}",
                     f"remove it or make it a regular file (the runtime reads every "
                     f"config in {d})", tuple(found + problems + unreadable))
    if problems:
        newest = runtime[1] if runtime else CNI_VERSIONS[-1]
        return Check("cni-configs", Status.FAIL, f"CNI configs in {d}: {problems[0]}",
                     f"set \"cniVersion\" to one the runtime parses (at most {newest})",
                     tuple(found + problems))
    if not found:
        return Check("cni-configs", Status.PASS, f"CNI configs: none in {d} name "
                     f"{PLUGIN_TYPE} (with Multus it is named by NADs){who}")
    return Check("cni-configs", Status.PASS, f"CNI configs in {d}: {len(found)} name "
                 f"{PLUGIN_TYPE}{who}", details=tuple(found))


# The commands the plugin runs: all a fresh node needs (the installer's `doctor --tools`).
TOOL_CHECKS: tuple[Callable[[Node], Check], ...] = (check_ip, check_ethtool, check_nsenter,
                                                    check_sh)
CHECKS: tuple[Callable[[Node], Check], ...] = (
    *TOOL_CHECKS, check_host_device, check_state_dir, check_policy, check_daemon,
    check_nics, check_cni_configs)


def run_checks(node: Node, checks: Sequence[Callable[[Node], Check]] = CHECKS) -> list[Check]:
    results = []
    for check in checks:
        try:
            results.append(check(node))
        except Exception as e:  # a doctor that crashes diagnoses nothing: report, go on
            name = check.__name__.removeprefix("check_").replace("_", "-")
            results.append(Check(name, Status.FAIL, f"{name}: the check itself failed: "
                                 f"{type(e).__name__}: {e}"[:300]))
    return results


def render(results: Sequence[Check]) -> str:
    """For a person's terminal: every check's text through display.safe (a NIC name is
    whatever a pod renamed it to before its netns died)."""
    from plugin.display import safe

    out = []
    for c in results:
        out.append(f"{_MARK[c.status]} {safe(c.summary)}")
        out += [f"    {safe(line)}" for line in c.details]
        if c.status is Status.FAIL and c.fix:
            out.append(f"    fix: {safe(c.fix)}")
    failed = sum(c.status is Status.FAIL for c in results)
    out.append("node ready" if not failed else f"{failed} check(s) failed")
    return "\n".join(out) + "\n"


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="amd-host-device doctor",
                                description="Check this node is ready for the plugin.")
    p.add_argument("--json", action="store_true", help=f"machine-readable ({SCHEMA})")
    p.add_argument("--cni-path", default=os.environ.get("CNI_PATH", ""),
                   help="where host-device is (colon list); the usual dirs are searched after")
    p.add_argument("--cni-conf-dir", default=os.environ.get(CONF_DIR_ENV) or DEFAULT_CONF_DIR,
                   help=f"the runtime's CNI config dir (default {DEFAULT_CONF_DIR})")
    p.add_argument("--state-dir", default="", help="default: the node policy's stateDir")
    p.add_argument("--tools", action="store_true",
                   help="check only the commands the plugin runs (ip, ethtool, nsenter, sh), "
                   "and which copy each is: what a fresh node needs (the installer runs it)")
    args = p.parse_args(argv)
    node = Node(tuple(d for d in args.cni_path.split(":") if d), args.cni_conf_dir,
                args.state_dir)
    results = run_checks(node, TOOL_CHECKS if args.tools else CHECKS)
    ok = all(c.status is not Status.FAIL for c in results)
    if args.json:
        sys.stdout.write(json.dumps({"schema": SCHEMA, "ok": ok,
                                     "checks": [c.to_json() for c in results]}, indent=2) + "\n")
    else:
        sys.stdout.write(render(results))
    return 0 if ok else 1
