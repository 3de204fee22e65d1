"""What Multus (v4, thin or thick) runs for a pod's secondary networks, without Kubernetes.

Rules reproduced (k8snetworkplumbingwg/multus-cni pkg/types/conf.go, pkg/multus; libcni), as
recorded with the real Multus on a simulated node:
- one attachment per entry of k8s.v1.cni.cncf.io/networks; the same NAD twice is two;
- a NAD with k8s.v1.cni.cncf.io/resourceName takes the pod's next allocated device ID of that
  resource (sorted) and gets it injected as top-level `deviceID` and `pciBusID`, into every
  plugin of a conflist;
- `runtimeConfig` is libcni's: only the capabilities a plugin declares (`"capabilities":
  {"deviceID": true, "CNIDeviceInfoFile": true}`), from Multus's capability args: `deviceID`,
  and `CNIDeviceInfoFile` = <devinfo>/cni/<namespace>-<nad>-<containerID>_<ifname> when the
  attachment has a device; an injected runtimeConfig replaces the NAD's literal one;
- the NAD's own cniVersion and name are kept;
- CNI_IFNAME is net1, net2, ... in annotation order unless the entry names an interface;
  Multus refuses an ifname that already exists in the pod before any plugin runs (a retried
  ADD of the same sandbox fails there);
- CNI_ARGS = IgnoreUnknown=true;K8S_POD_NAMESPACE;K8S_POD_NAME;K8S_POD_INFRA_CONTAINER_ID;
  K8S_POD_UID;
- ADD in order; a conflist runs like libcni (each plugin gets the previous result as
  prevResult); if an ADD fails, DEL runs for the attachments up to the failed one, the failed
  one included, in reverse (with libcni's cached result when it has one);
- DEL in reverse order from its cache, with the cached result as prevResult (cniVersion >=
  0.4.0), the same runtimeConfig as ADD, and then the device-info file removed;
- network-status: one entry per attachment, from its result and its device-info file.
"""

from __future__ import annotations

import copy
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

CNI_DIR = "/usr/lib/cni"
DEVINFO_ROOT = "/var/run/k8s.cni.cncf.io/devinfo"


class Runner(Protocol):
    def cni(self, command: str, conf: dict[str, Any] | str, container_id: str = "",
            netns: str = "", ifname: str = "", plugin: str = ...,
            extra_env: dict[str, str] | None = None, cni_path: str = ...,
            timeout: float = ...) -> Any: ...


@dataclass(frozen=True)
class Attachment:
    nad: dict[str, Any]                    # the NAD's spec.config: a conf or a conflist
    resource: str | None = "amd.com/nic"   # its k8s.v1.cni.cncf.io/resourceName
    interface: str = ""                    # "nad@ifname" in the annotation
    namespace: str = "default"             # the NAD object's namespace and name
    object_name: str = ""                  # (default: the config's name)

    @property
    def network(self) -> str:
        """`<namespace>/<name>`: network-status's name, and part of the device-info file's."""
        return f"{self.namespace}/{self.object_name or self.nad['name']}"


class MultusError(Exception):
    def __init__(self, ifname: str, call: Any = None, why: str = "") -> None:
        what = why or f"{call.stdout.strip()} {call.stderr.strip()[-300:]}"
        super().__init__(f"{ifname}: ADD failed: {what}")
        self.ifname = ifname
        self.call = call


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def device_info_path(att: Attachment, container_id: str, ifname: str,
                     root: str = DEVINFO_ROOT) -> str:
    """Multus's auto-generated CNIDeviceInfoFile (nadutils.GetCNIDeviceInfoPath)."""
    name = f"{att.network}-{container_id}_{ifname}".replace("/", "-")
    return os.path.join(root, "cni", name)


def delegate_plugins(att: Attachment, device_id: str | None,
                     capability_args: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The plugin configs libcni will run for one attachment, with Multus's injections."""
    nad = copy.deepcopy(att.nad)
    plugins = nad.get("plugins", [nad])
    out = []
    for p in plugins:
        conf = {**p, "name": nad["name"], "cniVersion": nad["cniVersion"]}
        if device_id:
            conf["deviceID"] = device_id
            conf["pciBusID"] = device_id
        declared = p.get("capabilities") or {}
        runtime = {k: v for k, v in (capability_args or {}).items() if declared.get(k) is True}
        if runtime:
            conf["runtimeConfig"] = runtime
        out.append(conf)
    return out


def network_status(entries: list[tuple[Attachment, str, dict[str, Any],
                                       dict[str, Any] | None]]) -> list[dict[str, Any]]:
    """k8s.v1.cni.cncf.io/network-status for (attachment, ifname, result, device-info)
    as Multus writes it (nadutils.CreateNetworkStatus)."""
    status = []
    for att, ifname, result, info in entries:
        entry: dict[str, Any] = {"name": att.network, "interface": ifname}
        ips = [ip["address"].split("/")[0] for ip in result.get("ips", [])]
        if ips:
            entry["ips"] = ips
        mac = next((i.get("mac", "") for i in result.get("interfaces", [])
                    if i.get("sandbox")), "")
        if mac:
            entry["mac"] = mac
        entry["dns"] = result.get("dns") or {}
        if info:
            entry["device-info"] = info
        status.append(entry)
    return status


@dataclass
class Planned:
    """One attachment as Multus will run it."""

    attachment: Attachment
    ifname: str
    plugins: list[dict[str, Any]]
    device_info: str = ""    # CNIDeviceInfoFile, when the attachment has a device


@dataclass
class MultusPod:
    node: Runner
    netns: str
    attachments: list[Attachment]
    allocated: list[str]                       # device IDs the device plugin gave the pod
    name: str = "network-workload"
    namespace: str = "default"
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    sandbox: str = field(default_factory=lambda: uuid.uuid4().hex)
    plugin_paths: dict[str, str] = field(default_factory=dict)
    devinfo_root: str = DEVINFO_ROOT
    # Whether an interface exists in the pod (Multus checks before each delegate); None: skip.
    ifname_exists: Callable[[str], bool] | None = None
    # Removes a file on the node (Multus removes the device-info file on DEL); None: skip.
    remove_file: Callable[[str], None] | None = None
    cache: list[Planned] = field(default_factory=list)          # Multus's delegates cache
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # libcni's result cache

    @property
    def cni_args(self) -> str:
        return (f"IgnoreUnknown=true;K8S_POD_NAMESPACE={self.namespace};K8S_POD_NAME={self.name};"
                f"K8S_POD_INFRA_CONTAINER_ID={self.sandbox};K8S_POD_UID={self.uid}")

    def plan(self) -> list[Planned]:
        """Each attachment's CNI_IFNAME, plugin configs and device-info path, in order."""
        devices = sorted(self.allocated)
        plan = []
        for n, att in enumerate(self.attachments, start=1):
            device_id = None
            if att.resource:
                if not devices:
                    raise ValueError(f"no {att.resource} device left for attachment {n}")
                device_id = devices.pop(0)
            ifname = att.interface or f"net{n}"
            args: dict[str, Any] = {}
            path = ""
            if device_id:
                path = device_info_path(att, self.sandbox, ifname, self.devinfo_root)
                args = {"deviceID": device_id, "CNIDeviceInfoFile": path}
            plan.append(Planned(att, ifname, delegate_plugins(att, device_id, args), path))
        return plan

    def _path(self, plugin_type: str) -> str:
        """Our plugin runs as the node's runner says (""); the others from Debian's dir."""
        if plugin_type == "amd-host-device":
            return self.plugin_paths.get(plugin_type, "")
        return self.plugin_paths.get(plugin_type) or os.path.join(CNI_DIR, plugin_type)

    def _run(self, command: str, ifname: str, conf: dict[str, Any]) -> Any:
        return self.node.cni(command, conf, self.sandbox, self.netns, ifname,
                             plugin=self._path(conf["type"]),
                             extra_env={"CNI_ARGS": self.cni_args})

    def _add_one(self, planned: Planned) -> dict[str, Any]:
        if self.ifname_exists is not None and self.ifname_exists(planned.ifname):
            raise MultusError(planned.ifname, why=f"interface name {planned.ifname} already "
                              "exists (Multus's own check: no plugin ran)")
        prev: dict[str, Any] | None = None
        for conf in planned.plugins:
            if prev is not None:
                conf = {**conf, "prevResult": prev}
            call = self._run("ADD", planned.ifname, conf)
            if call.rc != 0:
                raise MultusError(planned.ifname, call)
            prev = json.loads(call.stdout)
        assert prev is not None
        return prev

    def _del_one(self, planned: Planned, result: dict[str, Any] | None) -> list[Any]:
        calls = []
        for conf in reversed(planned.plugins):
            if result is not None and _version_key(conf["cniVersion"]) >= (0, 4, 0):
                conf = {**conf, "prevResult": result}
            calls.append(self._run("DEL", planned.ifname, conf))
        if planned.device_info and self.remove_file is not None:
            self.remove_file(planned.device_info)   # nadutils.CleanDeviceInfoForCNI
        return calls

    def add(self) -> list[tuple[str, dict[str, Any]]]:
        """ADD every attachment; on a failure, DEL up to the failed one in reverse, and raise.
        Called again for the same sandbox, this is kubelet retrying the ADD."""
        plan = self.plan()
        self.cache = plan   # Multus caches the delegates before it runs any
        out = []
        for idx, planned in enumerate(plan):
            try:
                result = self._add_one(planned)
            except MultusError:
                for undo in reversed(plan[:idx + 1]):
                    self._del_one(undo, self.results.pop(undo.ifname, None))
                raise
            self.results[planned.ifname] = result
            out.append((planned.ifname, result))
        return out

    def delete(self) -> list[Any]:
        """DEL from the cache, in reverse (kubelet's StopPodSandbox), even for attachments a
        failed ADD already DELed (DEL is idempotent)."""
        calls = []
        for planned in reversed(self.cache):
            calls += self._del_one(planned, self.results.pop(planned.ifname, None))
        self.cache = []
        bad = [c for c in calls if c.rc != 0]
        if bad:
            raise RuntimeError(f"DEL failed: {bad[0].stdout} {bad[0].stderr[-300:]}")
        return calls
