"""The state store: one file per attachment, an index by device, a lock per device.

Layout under stateDir (0700, files 0600):
    attachments/<containerID>@<ifname>.json   what DEL needs to give the NIC back
    devices/<device key>                      symlink to the attachment holding the device
    locks/<device key>.lock                   flock: ADD/DEL of one NIC never interleave

Keyed by attachment so a late DEL from an old sandbox cannot clobber a newer attachment of the
same NIC; '@' separates the two because container IDs cannot contain it.
Every write is temp file + fsync + rename + directory fsync: a crash leaves the old or the new
record, never half of one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from plugin import log
from plugin.errors import IO_FAILURE, TRY_AGAIN_LATER, CniError
from plugin.identity import NicIdentity
from plugin.netinfo import LinkSnapshot

FORMAT = 1
# AMD's Go plugin kept all its mappings in this one file of the same dir (plugin/legacy.py).
LEGACY_FILE_NAME = "ip-interface-mappings.json"
PHASE_MOVING = "moving"      # recorded before the NIC leaves the node; it may be anywhere
PHASE_ATTACHED = "attached"  # host-device succeeded: the NIC is in the pod


@dataclass(frozen=True)
class Record:
    """Everything DEL needs to give one attachment's NIC back."""

    container_id: str
    ifname: str
    device_key: str
    pci_address: str
    netns: str
    phase: str
    snapshot: LinkSnapshot
    result: Mapping[str, Any] | None = None
    created: float = 0.0
    netns_id: str = ""   # "dev:inode" of the pod netns at ADD: a reused path is not the pod
    orphaned_since: float = 0.0  # when the NIC was first found neither in the pod nor home
    identity: NicIdentity = NicIdentity()  # noqa: RUF009 (immutable); proof of the NIC
    network: str = ""    # the network's `name` (Multus: the NAD's): GC releases only its own
    pod: str = ""        # "<K8S_POD_NAMESPACE>/<K8S_POD_NAME>" when the runtime sent them
    master: str = ""     # the bridge/bond the NIC was a port of (moved with node policy's opt-in)
    uppers: tuple[str, ...] = ()  # devices stacked on the NIC when it left (gone with the move)

    def netns_alive(self, path: str = "") -> bool:
        """Whether the pod's netns still exists (and is the same namespace, not a reused
        /proc/<pid>/ns/net path)."""
        path = path or self.netns
        if not path:
            return False
        current = netns_identity(path)
        return bool(current) and (not self.netns_id or current == self.netns_id)

    @property
    def attachment(self) -> str:
        return f"{self.container_id}@{self.ifname}"

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "containerID": self.container_id, "ifname": self.ifname,
                "deviceKey": self.device_key, "pciAddress": self.pci_address,
                "netns": self.netns, "phase": self.phase, "snapshot": self.snapshot.to_json(),
                "result": self.result, "created": self.created, "netnsID": self.netns_id,
                "orphanedSince": self.orphaned_since, "identity": self.identity.to_json(),
                "network": self.network, "pod": self.pod, "master": self.master,
                "uppers": list(self.uppers)}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Record:
        return cls(container_id=obj["containerID"], ifname=obj["ifname"],
                   device_key=obj["deviceKey"], pci_address=obj.get("pciAddress", ""),
                   netns=obj.get("netns", ""), phase=obj["phase"],
                   snapshot=LinkSnapshot.from_json(obj["snapshot"]), result=obj.get("result"),
                   created=float(obj.get("created", 0.0)), netns_id=obj.get("netnsID", ""),
                   orphaned_since=float(obj.get("orphanedSince", 0.0)),
                   identity=NicIdentity.from_json(obj.get("identity")),
                   **_attachment_fields(obj))

    def advanced(self, phase: str, result: Mapping[str, Any] | None = None) -> Record:
        return replace(self, phase=phase, result=result if result is not None else self.result)


_DISPLAY_MAX = 317  # a Kubernetes namespace (63) + "/" + a pod name (253)


def displayable(value: str) -> str:
    """value if it may be stored in a display-only field, else ""."""
    return value if len(value) <= _DISPLAY_MAX and value.isprintable() else ""


def _attachment_fields(obj: Mapping[str, Any]) -> dict[str, Any]:
    """network, pod, master, uppers: validated on read (a record is hostile input)."""
    from plugin.cni import valid_ifname

    out: dict[str, Any] = {}
    for key in ("network", "pod", "master"):
        value = obj.get(key, "")
        if not isinstance(value, str) or displayable(value) != value:
            raise ValueError(f"{key}: must be a printable string of at most {_DISPLAY_MAX} "
                             "characters")
        if key == "master" and value and not valid_ifname(value):
            raise ValueError("master: not an interface name")
        out[key] = value
    uppers = obj.get("uppers", [])
    if not isinstance(uppers, list) or not all(isinstance(u, str) and valid_ifname(u)
                                               for u in uppers):
        raise ValueError("uppers: must be a list of interface names")
    out["uppers"] = tuple(uppers)
    return out


def netns_identity(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return ""
    return f"{st.st_dev}:{st.st_ino}"


def _io_error(what: str, e: OSError) -> CniError:
    return CniError(IO_FAILURE, f"state store: {what}: {e.strerror or e}", str(e.filename or ""))


class StateStore:
    def __init__(self, root: str, read_only: bool = False) -> None:
        """read_only (operators' `list`): nothing is created, and an unreadable record is
        left in place and listed in `unreadable` instead of being set aside."""
        self.root = root
        self._attachments = os.path.join(root, "attachments")
        self._devices = os.path.join(root, "devices")
        self._locks = os.path.join(root, "locks")
        self._ready = False
        self.read_only = read_only
        self.unreadable: list[tuple[str, str]] = []   # (path, why), filled when read_only

    # -- layout -------------------------------------------------------------------------------
    def ensure(self) -> None:
        if self._ready:
            return
        try:
            for d in (self.root, self._attachments, self._devices, self._locks):
                os.makedirs(d, mode=0o700, exist_ok=True)
            if os.stat(self.root).st_mode & 0o077:
                os.chmod(self.root, 0o700)
            self._ready = True
        except OSError as e:
            raise _io_error(f"cannot create {self.root}", e) from None

    def _record_path(self, container_id: str, ifname: str) -> str:
        return os.path.join(self._attachments, f"{container_id}@{ifname}.json")

    @staticmethod
    def _safe_key(key: str) -> str:
        return key.replace("/", "_")

    # -- locking ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, device_key: str, timeout: float) -> Iterator[None]:
        """Exclusive per-device lock with a bounded wait: a stuck holder yields code 11."""
        started = time.perf_counter()
        self.ensure()
        path = os.path.join(self._locks, self._safe_key(device_key) + ".lock")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise _io_error("cannot open lock", e) from None
        try:
            deadline = time.monotonic() + timeout
            delay = 0.005
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as e:
                    if e.errno not in (errno.EAGAIN, errno.EACCES):
                        raise _io_error("cannot lock", e) from None
                if time.monotonic() >= deadline:
                    raise CniError(TRY_AGAIN_LATER, f"device {device_key} is busy",
                                   f"another ADD/DEL held its lock for more than {timeout:g}s")
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
            log.record("state I/O (lock)", time.perf_counter() - started)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    @contextlib.contextmanager
    def shared_lock(self, device_key: str, timeout: float) -> Iterator[bool]:
        """A reader's share of the device's lock, without creating anything: yields False if
        an ADD/DEL held it for `timeout` (the caller reads anyway and says so). No lock file
        means no ADD/DEL ever ran on the device."""
        path = os.path.join(self._locks, self._safe_key(device_key) + ".lock")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            yield True
            return
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    held = True
                    break
                except OSError as e:
                    if e.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() >= deadline:
                        held = False
                        break
                time.sleep(0.01)
            yield held
        finally:
            os.close(fd)

    def set_aside(self) -> list[str]:
        """Records set aside as unreadable (`*.corrupt.<time>`), for operators to look at."""
        try:
            names = sorted(os.listdir(self._attachments))
        except OSError:
            return []
        return [os.path.join(self._attachments, n) for n in names if ".corrupt." in n]

    # -- records ------------------------------------------------------------------------------
    def write_file(self, path: str, data: bytes, durable: bool = True) -> None:
        tmp = f"{path}.tmp.{os.getpid()}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, data)
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            if durable:
                self._fsync_dir(os.path.dirname(path))
        except OSError as e:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise _io_error(f"cannot write {path}", e) from None

    @staticmethod
    def _fsync_dir(path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def save(self, record: Record, durable: bool = True) -> None:
        """Write the record, then point the device index at it. durable=False skips the
        fsyncs (still atomic): for updates whose loss a later DEL survives anyway."""
        with log.span("state I/O"):
            self._save(record, durable)

    def _save(self, record: Record, durable: bool) -> None:
        self.ensure()
        path = self._record_path(record.container_id, record.ifname)
        self.write_file(path, json.dumps(record.to_json(), sort_keys=True).encode(), durable)
        index = os.path.join(self._devices, self._safe_key(record.device_key))
        target = os.path.relpath(path, self._devices)
        try:
            if os.readlink(index) == target:
                return
        except OSError:
            pass
        tmp = f"{index}.tmp.{os.getpid()}"
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            os.symlink(target, tmp)
            os.replace(tmp, index)
            self._fsync_dir(self._devices)
        except OSError as e:
            raise _io_error("cannot write device index", e) from None

    def _load(self, path: str) -> Record | None:
        with log.span("state I/O"):
            return self._read(path)

    def _read(self, path: str) -> Record | None:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise _io_error(f"cannot read {path}", e) from None
        try:
            return Record.from_json(json.loads(data))
        except (ValueError, KeyError, TypeError) as e:
            if self.read_only:
                self.unreadable.append((path, str(e)[:200]))
                return None
            # One bad file must not block every other attachment: set it aside, keep going.
            aside = f"{path}.corrupt.{int(time.time())}"
            log.error(f"state record {path} is unreadable ({e}); moved to {aside}")
            with contextlib.suppress(OSError):
                os.replace(path, aside)
            return None

    def load(self, container_id: str, ifname: str) -> Record | None:
        return self._load(self._record_path(container_id, ifname))

    def holder_of(self, device_key: str) -> Record | None:
        """The attachment the index says holds this device, if its record still exists."""
        index = os.path.join(self._devices, self._safe_key(device_key))
        try:
            target = os.readlink(index)
        except OSError:
            return None
        return self._load(os.path.join(self._devices, target))

    def remove(self, record: Record) -> None:
        with log.span("state I/O"):
            self._remove(record)

    def _remove(self, record: Record) -> None:
        path = self._record_path(record.container_id, record.ifname)
        index = os.path.join(self._devices, self._safe_key(record.device_key))
        try:
            if os.readlink(index) == os.path.relpath(path, self._devices):
                os.unlink(index)
        except OSError:
            pass
        try:
            os.unlink(path)
            self._fsync_dir(self._attachments)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise _io_error(f"cannot remove {path}", e) from None

    def records(self) -> list[Record]:
        try:
            names = sorted(os.listdir(self._attachments))
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            if name.endswith(".json"):
                record = self._load(os.path.join(self._attachments, name))
                if record:
                    found.append(record)
        return found
