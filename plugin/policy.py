"""Node policy: the settings that can hurt the node, written by the node's admin, never a NAD.

A NAD is tenant input (anyone who may create one in a namespace controls every key), so where
state lives and which NICs may move are decided here. The file follows the ecosystem's habit of
a `<plugin>.d/` dir beside the CNI configs (Whereabouts, Multus); the DaemonSet's installer
writes it atomically from a ConfigMap (`{}` without one). A missing file means the defaults,
which are the safe choices, and a warning on every command that used them. Env overrides exist
for tests and for the daemon's own container.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, NamedTuple

from plugin.errors import INVALID_CONFIG, CniError
from plugin.files import NotRegular, read_regular
from plugin.values import PLUGIN_NAME_MAX, cni_name

PATH_ENV = "AMD_HOST_DEVICE_NODE_CONFIG"
STATE_DIR_ENV = "AMD_HOST_DEVICE_STATE_DIR"
SOCKET_ENV = "AMD_HOST_DEVICE_SOCKET"
DEFAULT_PATH = "/etc/cni/net.d/amd-host-device.d/amd-host-device.conf"
DEFAULT_STATE_DIR = "/var/lib/cni/amd-host-device"
DEFAULT_SOCKET = "/run/amd-host-device/daemon.sock"
DEFAULT_LOG_FILE_MAX_BYTES = 10 * 1024 * 1024
_MAX_FILE_BYTES = 64 * 1024


class NodePolicy(NamedTuple):
    """What the admin allows on this node. Every default is the narrow choice."""

    state_dir: str = DEFAULT_STATE_DIR
    allow_default_route_device: bool = False   # move a NIC that carries the node's uplink
    allow_non_pci_devices: bool = False        # `device` may name a netdev with no PCI parent
    allow_port_devices: bool = False           # move a bridge/bond port or a NIC with uppers
    # IPAM plugins a NAD's `ipam.type` may name: each is a CNI plugin the node runs as root
    # with the NAD's keys. A NAD without `ipam` uses the NIC's own addresses (static).
    allowed_ipam_types: tuple[str, ...] = ("static",)
    socket: str = DEFAULT_SOCKET               # the daemon's unix socket (thick mode)
    metrics_port: int = 0                      # the daemon's Prometheus port; 0 = off
    metrics_address: str = "127.0.0.1"         # the address it binds (an IP of the node)
    log_file: str = ""                         # extra log file; "" = stderr/stdout only
    log_file_max_bytes: int = DEFAULT_LOG_FILE_MAX_BYTES
    source: str = ""                           # the file read, "" when defaults were used


# file key -> (field, type)
_KEYS: Mapping[str, tuple[str, type]] = {
    "stateDir": ("state_dir", str),
    "allowDefaultRouteDevice": ("allow_default_route_device", bool),
    "allowNonPciDevices": ("allow_non_pci_devices", bool),
    "allowPortDevices": ("allow_port_devices", bool),
    "allowedIpamTypes": ("allowed_ipam_types", list),
    "socket": ("socket", str),
    "metricsPort": ("metrics_port", int),
    "metricsAddress": ("metrics_address", str),
    "logFile": ("log_file", str),
    "logFileMaxBytes": ("log_file_max_bytes", int),
}
_PATH_FIELDS = ("state_dir", "socket", "log_file")


def _bad(path: str, why: str) -> CniError:
    return CniError(INVALID_CONFIG, f"node policy {path}: {why}",
                    f"fix the file (or unset {PATH_ENV})")


def clean_path(value: str) -> str | None:
    """An absolute path without '..' or NUL, normalised; None if it is not one."""
    if not value or "\0" in value or not os.path.isabs(value) or ".." in value.split("/"):
        return None
    return os.path.normpath(value)


def _read(path: str) -> dict[str, Any] | None:
    try:
        data = read_regular(path, _MAX_FILE_BYTES, follow=True)
    except NotRegular as e:
        raise _bad(path, f"{str(e).removeprefix(path + ' ')}; only a regular file (or a "
                   "symlink to one) is read") from None
    except OSError as e:
        raise _bad(path, f"cannot read it: {e.strerror}") from None
    if data is None:
        return None
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise _bad(path, f"not valid JSON ({str(e)[:100]})") from None
    if not isinstance(obj, dict):
        raise _bad(path, "must be a JSON object")
    return obj


def parse(obj: Mapping[str, Any], source: str) -> NodePolicy:
    """Validate the file's keys; unknown keys are an error (a typo must not silently widen or
    narrow what the admin meant)."""
    fields: dict[str, Any] = {}
    for key, value in obj.items():
        if key not in _KEYS:
            raise _bad(source, f"unknown key {key!r} (known: {', '.join(_KEYS)})")
        name, kind = _KEYS[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise _bad(source, f"{key} must be a {kind.__name__}")
        if name in _PATH_FIELDS and isinstance(value, str) and value:
            cleaned = clean_path(value)
            if cleaned is None:
                raise _bad(source, f"{key} must be an absolute path without '..'")
            value = cleaned
        if kind is list:
            if not all(isinstance(t, str) and cni_name(t, PLUGIN_NAME_MAX) for t in value):
                raise _bad(source, f"{key} must be a list of CNI plugin names")
            value = tuple(value)
        fields[name] = value
    if not 0 <= fields.get("metrics_port", 0) <= 65535:
        raise _bad(source, "metricsPort must be 0 (off) or a port number")
    if "metrics_address" in fields:
        fields["metrics_address"] = _ip(source, fields["metrics_address"])
    if fields.get("log_file_max_bytes", DEFAULT_LOG_FILE_MAX_BYTES) < 4096:
        raise _bad(source, "logFileMaxBytes must be at least 4096")
    if not fields.get("state_dir", DEFAULT_STATE_DIR):
        raise _bad(source, "stateDir must not be empty")
    return NodePolicy(**fields, source=source)


def _ip(source: str, value: str) -> str:
    """metricsAddress: one IP address (v4 or v6, no scope ID), canonical."""
    import ipaddress

    try:
        if "%" in value:
            raise ValueError(value)
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise _bad(source, "metricsAddress must be an IP address of the node (default "
                   "127.0.0.1; 0.0.0.0 or :: for every address)") from None


def _env_path(environ: Mapping[str, str], var: str) -> str | None:
    value = environ.get(var, "")
    if not value:
        return None
    cleaned = clean_path(value)
    if cleaned is None:
        raise CniError(INVALID_CONFIG, f"{var}={value[:80]!r}: must be an absolute path "
                       "without '..'")
    return cleaned


def _warn_missing(path: str) -> None:
    """Every command that runs on the defaults says so: the installer always writes a file,
    so its absence means the node was set up by hand, or this is not the node's root."""
    from plugin import log

    log.warn(f"node policy {path} not found: using the defaults (the DaemonSet's installer "
             "always writes one; is this the node's root?)")


def load(environ: Mapping[str, str]) -> NodePolicy:
    """The node's policy: the file (if any), then the overrides in `environ` (the request's,
    or the process's for the other entries)."""
    path = environ.get(PATH_ENV) or DEFAULT_PATH
    obj = _read(path)
    if obj is None:
        _warn_missing(path)
    policy = NodePolicy() if obj is None else parse(obj, path)
    overrides: dict[str, Any] = {}
    state_dir = _env_path(environ, STATE_DIR_ENV)
    if state_dir:
        overrides["state_dir"] = state_dir
    socket = _env_path(environ, SOCKET_ENV)
    if socket:
        overrides["socket"] = socket
    if overrides:

        policy = policy._replace(**overrides)
    return policy
