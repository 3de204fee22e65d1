"""CNI protocol layer: the environment a runtime hands us, and the versions we speak."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import NamedTuple

from plugin import CNI_VERSIONS
from plugin.errors import INCOMPATIBLE_VERSION, INVALID_ENV, UNKNOWN_CONTAINER, CniError
from plugin.values import valid_container_id, valid_ifname

COMMANDS = ("ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC")

_VERSION = re.compile(r"([0-9]+)\.([0-9]+)\.([0-9]+)")


def version_key(version: str) -> tuple[int, int, int]:
    m = _VERSION.fullmatch(version) if isinstance(version, str) else None
    if not m:
        raise CniError(INCOMPATIBLE_VERSION, f"invalid cniVersion {version!r}",
                       f"supported: {', '.join(CNI_VERSIONS)}")
    return int(m[1]), int(m[2]), int(m[3])


def require_supported(version: str) -> str:
    version_key(version)
    if version not in CNI_VERSIONS:
        raise CniError(INCOMPATIBLE_VERSION, f"unsupported cniVersion {version!r}",
                       f"supported: {', '.join(CNI_VERSIONS)}")
    return version


def parse_cni_args(raw: str) -> dict[str, str]:
    """K=V;K=V pairs. Duplicates are normal (Multus and the runtime both add IgnoreUnknown):
    the last one wins. Values may contain '='."""
    args: dict[str, str] = {}
    for pair in raw.split(";"):
        if not pair.strip():
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CniError(INVALID_ENV, f"CNI_ARGS: malformed pair {pair!r}", "expected K=V")
        args[key.strip()] = value
    return args


class Env(NamedTuple):
    """The runtime's CNI_* variables, validated for the command at hand."""

    command: str
    container_id: str
    netns: str
    ifname: str
    args: Mapping[str, str]
    path: tuple[str, ...]

    @property
    def attachment(self) -> str:
        return f"{self.container_id}/{self.ifname}"


def read_command(environ: Mapping[str, str]) -> str:
    command = environ.get("CNI_COMMAND", "")
    if not command:
        raise CniError(INVALID_ENV, "CNI_COMMAND is not set")
    if command not in COMMANDS:
        raise CniError(INVALID_ENV, f"CNI_COMMAND: unknown command {command!r}",
                       f"expected one of {', '.join(COMMANDS)}")
    return command


def parse_env(environ: Mapping[str, str]) -> Env:
    """Validate the variables the command needs; name the one that is wrong."""
    command = read_command(environ)
    per_attachment = command in ("ADD", "DEL", "CHECK")
    container_id = environ.get("CNI_CONTAINERID", "")
    ifname = environ.get("CNI_IFNAME", "")
    netns = environ.get("CNI_NETNS", "")
    if per_attachment:
        if not container_id:
            raise CniError(INVALID_ENV, "CNI_CONTAINERID is not set")
        if not valid_container_id(container_id):
            raise CniError(INVALID_ENV, f"CNI_CONTAINERID: invalid container ID {container_id!r}",
                           "must match [A-Za-z0-9][A-Za-z0-9_.-]*")
        if not ifname:
            raise CniError(INVALID_ENV, "CNI_IFNAME is not set")
        if not valid_ifname(ifname):
            raise CniError(INVALID_ENV, f"CNI_IFNAME: invalid interface name {ifname!r}",
                           "1-15 printable characters, no '/', ':' or white space")
    if command in ("ADD", "CHECK"):
        if not netns:
            raise CniError(INVALID_ENV, "CNI_NETNS is not set")
        if not os.path.isabs(netns):
            raise CniError(INVALID_ENV, f"CNI_NETNS: not an absolute path {netns!r}")
        if not os.path.exists(netns):
            raise CniError(UNKNOWN_CONTAINER, f"CNI_NETNS: network namespace {netns!r} does not exist")
    args = parse_cni_args(environ.get("CNI_ARGS", "")) if per_attachment else {}
    path = tuple(p for p in environ.get("CNI_PATH", "").split(":") if p)
    return Env(command, container_id, netns, ifname, args, path)
