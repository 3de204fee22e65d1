"""What Multus (thick, v4) runs for a pod's secondary networks, without Kubernetes.

Rules reproduced (k8snetworkplumbingwg/multus-cni, pkg/types/conf.go, pkg/multus):
- one attachment per entry of k8s.v1.cni.cncf.io/networks; the same NAD twice is two;
- a NAD with k8s.v1.cni.cncf.io/resourceName takes the pod's next allocated device ID of that
  resource (sorted) and gets it injected as top-level `deviceID` and `pciBusID`, into every
  plugin of a conflist;
- CNI_IFNAME is net1, net2, ... in annotation order unless the entry names an interface;
- CNI_ARGS = IgnoreUnknown=true;K8S_POD_NAMESPACE;K8S_POD_NAME;K8S_POD_INFRA_CONTAINER_ID;
  K8S_POD_UID;
- ADD in order; a conflist runs like libcni (each plugin gets the previous result as
  prevResult); if an ADD fails, DEL runs for the attachments already added, the failed one
  included, in reverse;
- DEL in reverse order, with the cached result as prevResult (cniVersion >= 0.4.0).
"""

from __future__ import annotations

import copy
import json
import os
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

CNI_DIR = "/usr/lib/cni"


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


class MultusError(Exception):
    def __init__(self, ifname: str, call: Any) -> None:
        super().__init__(f"{ifname}: ADD failed: {call.stdout.strip()} {call.stderr.strip()[-300:]}")
        self.ifname = ifname
        self.call = call


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def delegate_plugins(att: Attachment, device_id: str | None) -> list[dict[str, Any]]:
    """The plugin configs libcni will run for one attachment, with Multus's injections."""
    nad = copy.deepcopy(att.nad)
    plugins = nad.get("plugins", [nad])
    out = []
    for p in plugins:
        conf = {**p, "name": nad["name"], "cniVersion": nad["cniVersion"]}
        if device_id:
            conf["deviceID"] = device_id
            conf["pciBusID"] = device_id
        out.append(conf)
    return out


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
    cache: list[tuple[str, list[dict[str, Any]], dict[str, Any] | None]] = field(default_factory=list)

    @property
    def cni_args(self) -> str:
        return (f"IgnoreUnknown=true;K8S_POD_NAMESPACE={self.namespace};K8S_POD_NAME={self.name};"
                f"K8S_POD_INFRA_CONTAINER_ID={self.sandbox};K8S_POD_UID={self.uid}")

    def plan(self) -> list[tuple[str, list[dict[str, Any]]]]:
        """(CNI_IFNAME, plugin configs) per attachment, in annotation order."""
        devices = sorted(self.allocated)
        plan = []
        for n, att in enumerate(self.attachments, start=1):
            device_id = None
            if att.resource:
                if not devices:
                    raise ValueError(f"no {att.resource} device left for attachment {n}")
                device_id = devices.pop(0)
            plan.append((att.interface or f"net{n}", delegate_plugins(att, device_id)))
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

    def _add_one(self, ifname: str, plugins: list[dict[str, Any]]) -> dict[str, Any]:
        prev: dict[str, Any] | None = None
        for conf in plugins:
            if prev is not None:
                conf = {**conf, "prevResult": prev}
            call = self._run("ADD", ifname, conf)
            if call.rc != 0:
                raise MultusError(ifname, call)
            prev = json.loads(call.stdout)
        assert prev is not None
        return prev

    def _del_one(self, ifname: str, plugins: list[dict[str, Any]],
                 result: dict[str, Any] | None) -> list[Any]:
        calls = []
        for conf in reversed(plugins):
            if result is not None and _version_key(conf["cniVersion"]) >= (0, 4, 0):
                conf = {**conf, "prevResult": result}
            calls.append(self._run("DEL", ifname, conf))
        return calls

    def add(self) -> list[tuple[str, dict[str, Any]]]:
        results = []
        for ifname, plugins in self.plan():
            try:
                result = self._add_one(ifname, plugins)
            except MultusError:
                self._del_one(ifname, plugins, None)
                for done_if, done_plugins, done_result in reversed(self.cache):
                    self._del_one(done_if, done_plugins, done_result)
                self.cache.clear()
                raise
            self.cache.append((ifname, plugins, result))
            results.append((ifname, result))
        return results

    def delete(self) -> list[Any]:
        calls = []
        for ifname, plugins, result in reversed(self.cache):
            calls += self._del_one(ifname, plugins, result)
        self.cache.clear()
        bad = [c for c in calls if c.rc != 0]
        if bad:
            raise RuntimeError(f"DEL failed: {bad[0].stdout} {bad[0].stderr[-300:]}")
        return calls
