"""The delegate runner: find the reference host-device plugin, speak a version it knows, run it.

Debian's host-device stops at CNI 1.0.0; asking it for 1.1.0 fails, so we ask it for the best
version both sides know and convert its result to what our caller asked for.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from plugin import CNI_VERSIONS, log, node, profile, settings
from plugin.cni import Env, version_key
from plugin.errors import DELEGATE_FAILED, NOT_AVAILABLE, CniError
from plugin.files import NotRegular, read_regular
from plugin.node import Finished, Node

PLUGIN = "host-device"
FALLBACK_DIRS = ("/opt/cni/bin", "/var/lib/cni/bin", "/usr/libexec/cni", "/usr/lib/cni")
FALLBACK_ENV = settings.FALLBACK_ENV
TIMEOUT_SECONDS = 60.0
# Asked where the answer's shape does not matter (VERSION, DEL): every host-device since CNI
# 1.0 speaks it; pick_version falls back to what the binary said it speaks.
BASELINE_VERSION = "1.0.0"
_CACHE_NAME = "delegate-versions.json"
# Codes a delegate may return that mean the same to our caller; anything else is ours (100).
_PASS_THROUGH = {3, 4, 5, 11}


class Delegate(NamedTuple):
    """The host-device binary found, and the CNI versions it speaks."""

    path: str
    versions: tuple[str, ...]

    def pick_version(self, wanted: str) -> str:
        if wanted in self.versions:
            return wanted
        common = [v for v in CNI_VERSIONS if v in self.versions]
        if not common:
            raise CniError(NOT_AVAILABLE, f"{self.path} speaks no CNI version we do",
                           f"it supports {', '.join(self.versions)}")
        below = [v for v in common if version_key(v) <= version_key(wanted)]
        if below:
            return max(below, key=version_key)
        return min(common, key=version_key)


def search_dirs(cni_path: Sequence[str]) -> list[str]:
    """CNI_PATH first, then the usual plugin dirs (AMD_HOST_DEVICE_FALLBACK_DIRS overrides
    them: a colon list, empty for none)."""
    override = settings.current().fallback_dirs
    fallback = FALLBACK_DIRS if override is None else tuple(d for d in override.split(":") if d)
    dirs: list[str] = []
    for d in (*cni_path, *fallback):
        if d not in dirs:
            dirs.append(d)
    return dirs


def find(cni_path: Sequence[str]) -> str:
    for d in search_dirs(cni_path):
        candidate = os.path.join(d, PLUGIN)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise CniError(NOT_AVAILABLE, f"delegate plugin {PLUGIN!r} not found",
                   f"searched {':'.join(search_dirs(cni_path))}")


def _exec(path: str, env: Mapping[str, str], stdin: bytes, on: Node | None = None) -> Finished:
    """Run the delegate (plugin/node.py: in its own process group, killed with everything it
    started at TIMEOUT_SECONDS or when we are interrupted)."""
    try:
        with profile.span(f"delegate {os.path.basename(path)} {env.get('CNI_COMMAND', '')}"):
            return (on or node.local()).spawn([path], env, stdin, TIMEOUT_SECONDS)
    except node.Unanswered:
        raise CniError(DELEGATE_FAILED, f"{PLUGIN} did not answer in "
                       f"{TIMEOUT_SECONDS:g}s; its process group was killed") from None
    except OSError as e:
        raise CniError(NOT_AVAILABLE, f"cannot run {path}: {e.strerror}") from None


def _versions_from_cache(path: str, cache_dir: str) -> tuple[str, ...] | None:
    try:
        st = os.stat(path)
        data = read_regular(os.path.join(cache_dir, _CACHE_NAME), 4096)
        if data is None:
            return None
        cached = json.loads(data)
        if cached.get("id") == [path, st.st_ino, st.st_size, st.st_mtime_ns]:
            return tuple(cached["versions"])
    except (OSError, ValueError, AttributeError, KeyError, TypeError, NotRegular):
        pass  # a FIFO or symlink planted there is never opened for real: just ask again
    return None


def _save_cache(path: str, versions: Sequence[str], cache_dir: str) -> None:
    """Best effort: a lost cache only costs one more VERSION call."""
    with contextlib.suppress(OSError):
        st = os.stat(path)
        data = json.dumps({"id": [path, st.st_ino, st.st_size, st.st_mtime_ns],
                           "versions": list(versions)}).encode()
        # An unpredictable name, created O_EXCL without following links (see plugin/state.py).
        tmp = os.path.join(cache_dir, f".{_CACHE_NAME}.tmp.{os.urandom(8).hex()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        try:
            os.replace(tmp, os.path.join(cache_dir, _CACHE_NAME))
        except OSError:
            os.unlink(tmp)
            raise


def locate(on: Node, cni_path: Sequence[str], cache_dir: str) -> Delegate:
    """The delegate and the versions it speaks (asked once per binary, then cached)."""
    path = find(cni_path)
    versions = _versions_from_cache(path, cache_dir)
    if versions is None:
        env = {"CNI_COMMAND": "VERSION",
               "PATH": settings.current().environ.get("PATH", "/usr/sbin:/usr/bin")}
        proc = _exec(path, env, b'{"cniVersion":"%s"}' % BASELINE_VERSION.encode(), on)
        try:
            versions = tuple(json.loads(proc.stdout)["supportedVersions"])
        except (ValueError, KeyError, TypeError):
            raise CniError(NOT_AVAILABLE, f"{path} did not answer VERSION",
                           proc.stderr.decode("utf-8", "replace")[:300]) from None
        _save_cache(path, versions, cache_dir)
    return Delegate(path, versions)


def run(on: Node, delegate: Delegate, command: str, env: Env, ifname: str, netns: str,
        conf: Mapping[str, Any]) -> dict[str, Any] | None:
    """Run the delegate; its result object for ADD, None otherwise; CniError on failure."""
    child = dict(settings.current().environ)   # the request's environment
    dirs = search_dirs(env.path)
    own_dir = os.path.dirname(delegate.path)
    child.update(CNI_COMMAND=command, CNI_CONTAINERID=env.container_id, CNI_NETNS=netns,
                 CNI_IFNAME=ifname,
                 # host-device finds its IPAM plugin (static) through CNI_PATH.
                 CNI_PATH=":".join([own_dir, *(d for d in dirs if d != own_dir)]))
    child["CNI_ARGS"] = ";".join(f"{k}={v}" for k, v in env.args.items())
    proc = _exec(delegate.path, child, json.dumps(conf).encode(), on)
    for line in proc.stderr.decode("utf-8", "replace").splitlines():
        if line.strip():
            log.event(f"{PLUGIN}: {line.strip()}")
    if proc.code != 0:
        try:
            err = json.loads(proc.stdout)
            code, msg, details = int(err.get("code", 0)), str(err.get("msg", "")), \
                str(err.get("details", ""))
        except (ValueError, AttributeError, TypeError):
            code, msg, details = 0, proc.stdout.decode("utf-8", "replace")[:300], ""
        raise CniError(code if code in _PASS_THROUGH else DELEGATE_FAILED,
                       f"{PLUGIN} {command} failed: {msg or 'exit ' + str(proc.code)}",
                       details or f"{PLUGIN} code {code}")
    if command != "ADD":
        return None
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        raise CniError(DELEGATE_FAILED, f"{PLUGIN} ADD printed no JSON result",
                       proc.stdout.decode("utf-8", "replace")[:300]) from None
    if not isinstance(result, dict):
        raise CniError(DELEGATE_FAILED, f"{PLUGIN} ADD result is not an object")
    return result
