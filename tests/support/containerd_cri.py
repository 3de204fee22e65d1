"""containerd's CRI as the kubelet drives it, on the simulated node: the test suite
(tests/runtime/test_containerd_cri.py) and `make bench` both run it from here.

containerd runs with its own config, root, state, socket and CNI dirs under one temp dir,
inside the node's netns only (`nsenter --net`: `ip netns exec` would remount /sys and hide the
cgroups runc needs) and in the host's one lasting mount namespace, as on a real node. close()
stops it and everything it started, by PID, unmounts what it left under the temp dir, removes
the dir, and removes /run/containerd (1.6 puts its shim sockets there, whatever the config
says) if it did not exist before.

The sandbox ("pause") image is the local base image with `sleep infinity` as its command,
built once with buildah (kept in podman's store) and imported into each containerd's own
store with `ctr`; no registry is needed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Any

import grpc
from cri_api.v1 import api_pb2, api_pb2_grpc

from tests.support.simnode import REPO, SimNode

BASE_IMAGE = os.environ.get("BASE_IMAGE", "localhost/amd-host-device-base:bookworm")
SANDBOX_IMAGE = os.environ.get("SANDBOX_IMAGE", "localhost/amd-host-device-pause:bookworm")
DEBIAN_CNI = "/usr/lib/cni"
RUN_CONTAINERD = "/run/containerd"
LIBCNI_CACHE = "/var/lib/cni"   # libcni's result cache: 1.6's CRI has no setting for it
_RESULTS = os.path.join(LIBCNI_CACHE, "results")
_PODMAN_ENV = {**os.environ, "CONTAINERS_CONF": os.path.join(REPO, "hack", "containers.conf")}


def _run(*argv: str, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {p.returncode}: {p.stderr.strip()[-600:]}")
    return p.stdout.strip()


def ensure_sandbox_image(base: str = BASE_IMAGE, image: str = SANDBOX_IMAGE) -> str:
    """The sandbox image in podman's store (built from the base image once); its name."""
    exists = subprocess.run(["podman", "image", "exists", image], env=_PODMAN_ENV, check=False)
    if exists.returncode != 0:
        ctr = _run("buildah", "from", "--pull-never", "--quiet", base, env=_PODMAN_ENV)
        try:
            _run("buildah", "config", "--env", "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                 "--entrypoint", "[]", "--cmd", '["/bin/sleep", "infinity"]',
                 ctr, env=_PODMAN_ENV)
            _run("buildah", "commit", "--quiet", ctr, image, env=_PODMAN_ENV)
        finally:
            subprocess.run(["buildah", "rm", ctr], env=_PODMAN_ENV, capture_output=True, check=False)
    return image


def _mountpoints_under(prefix: str) -> list[str]:
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return found


def _pids_whose_cmdline_has(marker: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if marker.encode() in args:
            pids.append(int(entry))
    return pids


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            kids.append(int(entry))
    return kids


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not os.path.exists(f"/proc/{pid}"):
            return True
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


class Containerd:
    """One containerd on the simulated node, with our CNI dirs; a CRI client to it."""

    def __init__(self, node: SimNode, plugin: str = "", record_commands: bool = False) -> None:
        self.node = node
        self.plugin = plugin or node.plugin
        self.had_run_dir = os.path.exists(RUN_CONTAINERD)
        self.had_cache_dirs = {d: os.path.exists(d) for d in (LIBCNI_CACHE, _RESULTS)}
        self.seen: set[str] = set()
        self._mark = 0
        self.dir = tempfile.mkdtemp(prefix="ahd-containerd-", dir="/var/tmp")
        self.socket = os.path.join(self.dir, "containerd.sock")
        self.conf_dir = os.path.join(self.dir, "net.d")
        self.bin_dir = os.path.join(self.dir, "bin")
        self.calls_log = os.path.join(self.dir, "cni-calls.log")
        self.log_path = os.path.join(self.dir, "containerd.log")
        self.proc: subprocess.Popen[bytes] | None = None
        self.imported = False
        self.channel: grpc.Channel | None = None
        self.rt: Any = None
        os.makedirs(self.conf_dir)
        os.makedirs(self.bin_dir)
        for name in ("host-device", "static", "sbr", "loopback"):
            os.symlink(os.path.join(DEBIAN_CNI, name), os.path.join(self.bin_dir, name))
        ours = os.path.join(self.bin_dir, "amd-host-device")
        if record_commands:
            # One line per call (command, whether a netns and a prevResult came), then the
            # plugin itself: what the runtime sends, whatever the plugin logs.
            with open(ours, "w") as f:
                f.write("#!/bin/sh\nin=$(cat)\nn=-; [ -n \"$CNI_NETNS\" ] && n=netns\n"
                        "case \"$in\" in *prevResult*) p=prev;; *) p=-;; esac\n"
                        f"echo \"$CNI_COMMAND $n $p\" >> {self.calls_log}\n"
                        f"printf '%s' \"$in\" | exec {self.plugin}\n")
            os.chmod(ours, 0o755)
        else:
            os.symlink(self.plugin, ours)
        self._write_config()

    # -- configuration -----------------------------------------------------------------------
    def _write_config(self) -> None:
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        text = f"""version = 2
root = "{self.dir}/root"
state = "{self.dir}/state"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[{cri}]
  sandbox_image = "{SANDBOX_IMAGE}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
[{cri}.cni]
  bin_dir = "{self.bin_dir}"
  conf_dir = "{self.conf_dir}"
  max_conf_num = 1
[{cri}.containerd]
  snapshotter = "overlayfs"
"""
        with open(os.path.join(self.dir, "config.toml"), "w") as f:
            f.write(text)

    def use_network(self, conflist: dict[str, Any], wait: float = 30) -> None:
        """Make `conflist` the pod network (the only file in conf_dir) and wait until the CRI
        plugin has loaded it (its verbose Status shows the loaded config)."""
        for old in os.listdir(self.conf_dir):
            os.unlink(os.path.join(self.conf_dir, old))
        path = os.path.join(self.conf_dir, "10-ahd.conflist")
        with open(path + ".tmp", "w") as f:
            json.dump(conflist, f)
        os.rename(path + ".tmp", path)
        if self.rt is None:
            return
        deadline = time.monotonic() + wait
        want = json.dumps(conflist, sort_keys=True)
        while True:
            if want in self._loaded_networks():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"containerd did not load {conflist['name']}")
            time.sleep(0.05)

    def _loaded_networks(self) -> list[str]:
        info = self.rt.Status(api_pb2.StatusRequest(verbose=True), timeout=30).info
        cni = json.loads(info.get("cniconfig", "{}"))
        return [json.dumps(json.loads(n["Config"]["Source"]), sort_keys=True)
                for n in cni.get("Networks") or [] if n.get("Config", {}).get("Source")]

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, wait: float = 60) -> None:
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
               "AMD_HOST_DEVICE_SYSFS": self.node.sysfs,
               "AMD_HOST_DEVICE_STATE_DIR": self.node.state_dir}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                ["nsenter", f"--net={self.node.netns_path(self.node.node)}", "containerd",
                 "--config", os.path.join(self.dir, "config.toml")],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                start_new_session=True)
        self.channel = grpc.insecure_channel(f"unix://{self.socket}")
        self.rt = api_pb2_grpc.RuntimeServiceStub(self.channel)
        deadline = time.monotonic() + wait
        while True:
            try:
                self.rt.Version(api_pb2.VersionRequest(), timeout=5)
                break
            except grpc.RpcError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("containerd did not start: " + self.log_tail()) from None
                time.sleep(0.1)
        if not self.imported:
            self._import_sandbox_image()

    def _import_sandbox_image(self) -> None:
        """podman's copy of the sandbox image, into this containerd's own store."""
        archive = os.path.join(self.dir, "sandbox.tar")
        ensure_sandbox_image()
        try:
            _run("podman", "save", "--quiet", "--format", "docker-archive", "-o", archive,
                 SANDBOX_IMAGE, env=_PODMAN_ENV)
            _run("ctr", "-a", self.socket, "-n", "k8s.io", "images", "import", archive)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(archive)
        self.imported = True

    def stop(self) -> None:
        """containerd itself only (its shims and pods keep running, as on a node)."""
        if self.channel is not None:
            self.channel.close()
            self.channel, self.rt = None, None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, n: int = 3000) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""

    def calls(self) -> list[str]:
        """The CNI calls the runtime made to our plugin, in order (record_commands=True)."""
        try:
            with open(self.calls_log) as f:
                return [x.strip() for x in f if x.strip()]
        except FileNotFoundError:
            return []

    def mark(self) -> None:
        """new_calls() starts here."""
        self._mark = len(self.calls())

    def new_calls(self) -> list[str]:
        return self.calls()[self._mark:]

    def close(self) -> None:
        """Pods, containerd, its shims, mounts, files: all of it, even after a failure."""
        try:
            if self.rt is not None and self.proc is not None and self.proc.poll() is None:
                for sid in self.sandbox_ids():
                    with contextlib.suppress(grpc.RpcError):
                        self.remove(sid)
        finally:
            self.stop()
            for shim in _pids_whose_cmdline_has(self.socket):
                for kid in _children(shim):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(kid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(shim, signal.SIGKILL)
                _wait_gone(shim, 10)
            for point in sorted(_mountpoints_under(self.dir), key=len, reverse=True):
                subprocess.run(["umount", "-l", point], capture_output=True, check=False)
            shutil.rmtree(self.dir, ignore_errors=True)
            if not self.had_run_dir:
                shutil.rmtree(RUN_CONTAINERD, ignore_errors=True)
            self._forget_cached_results()

    def _forget_cached_results(self) -> None:
        """libcni's cached results of our sandboxes (DEL removes them; a failure may not), and
        its cache dirs if they were not there before and are empty (others may use them)."""
        with contextlib.suppress(OSError):
            for name in os.listdir(_RESULTS):
                if any(f"-{sid}-" in name for sid in self.seen):
                    os.unlink(os.path.join(_RESULTS, name))
        for d in (_RESULTS, LIBCNI_CACHE):
            if not self.had_cache_dirs[d]:
                with contextlib.suppress(OSError):
                    os.rmdir(d)

    def __enter__(self) -> Containerd:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- CRI ---------------------------------------------------------------------------------
    def run_pod(self, name: str, timeout: float = 120) -> str:
        meta = api_pb2.PodSandboxMetadata(name=name, uid=f"uid-{name}", namespace="ahd-test",
                                          attempt=0)
        config = api_pb2.PodSandboxConfig(metadata=meta, hostname=name,
                                          log_directory=os.path.join(self.dir, "pods", name))
        try:
            reply = self.rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config),
                                          timeout=timeout)
        finally:
            self.seen.update(self.sandbox_ids())
        return str(reply.pod_sandbox_id)

    def stop_pod(self, sid: str, timeout: float = 120) -> None:
        self.rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=sid), timeout=timeout)

    def remove(self, sid: str, timeout: float = 120) -> None:
        self.rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=sid),
                                 timeout=timeout)

    def sandbox_ids(self) -> list[str]:
        reply = self.rt.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=30)
        ids = [str(s.id) for s in reply.items]
        self.seen.update(ids)
        return ids

    def status(self, sid: str) -> tuple[str, dict[str, Any]]:
        """(READY/NOTREADY, containerd's verbose info: pid, runtimeSpec, ...)."""
        reply = self.rt.PodSandboxStatus(
            api_pb2.PodSandboxStatusRequest(pod_sandbox_id=sid, verbose=True), timeout=30)
        state = api_pb2.PodSandboxState.Name(reply.status.state).removeprefix("SANDBOX_")
        return state, json.loads(reply.info.get("info", "{}"))

    def netns(self, sid: str) -> str:
        """The pod's netns path (a bind mount in containerd's state dir)."""
        _, info = self.status(sid)
        spaces = info["runtimeSpec"]["linux"]["namespaces"]
        return str(next(n["path"] for n in spaces if n["type"] == "network"))

    def pause_pid(self, sid: str) -> int:
        return int(self.status(sid)[1]["pid"])


def in_netns(path: str, *argv: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    """A command in a pod's netns (by path), e.g. `ip -j addr` or `ping`."""
    return subprocess.run(["nsenter", f"--net={path}", *argv], capture_output=True, text=True,
                          timeout=60, check=check)
