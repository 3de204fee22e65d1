"""The state store: one file per attachment, an index by device, a lock per device.

Layout under stateDir (0700, files 0600):
    attachments/<containerID>@<ifname>.json   what DEL needs to give the NIC back
    devices/<device key>                      symlink to the attachment holding the device
    locks/<device key>.lock                   flock: ADD/DEL of one NIC never interleave
    format.json                               the layout's formatVersion (plugin/formats.py)

Keyed by attachment so a late DEL from an old sandbox cannot clobber a newer attachment of the
same NIC; '@' separates the two because container IDs cannot contain it. A name that would pass
255 bytes (a runtime may send long IDs) is shortened with a hash suffix; the full ID stays in
the record, and a record whose content names another attachment than its file is corrupt.
Every write is temp file (O_EXCL, unpredictable name) + fsync + rename + directory fsync: a
crash leaves the old or the new record, never half of one.

The dir is ours alone: the root and its subdirs must be real directories owned by us (never a
symlink), and every file is opened O_NOFOLLOW|O_NONBLOCK and must be a regular file (a FIFO
would hang us). Whatever fails a check is set aside like a corrupt record, and a sweep goes on.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import stat
import time
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

from plugin import __version__, files, formats, log, netns, profile
from plugin import values as v
from plugin.errors import INVALID_CONFIG, IO_FAILURE, TRY_AGAIN_LATER, CniError
from plugin.files import NotRegular
from plugin.identity import NicIdentity
from plugin.snapshot import LinkSnapshot

# AMD's Go plugin kept all its mappings in this one file of the same dir (plugin/legacy.py).
LEGACY_FILE_NAME = "ip-interface-mappings.json"
PHASE_MOVING = "moving"      # recorded before the NIC leaves the node; it may be anywhere
PHASE_ATTACHED = "attached"  # host-device succeeded: the NIC is in the pod
PHASES = (PHASE_MOVING, PHASE_ATTACHED)
MAX_FILE_BYTES = 1 << 20
_NAME_MAX = 255
_NETNS_ID = re.compile(r"[0-9]+:[0-9]+")
_OPEN_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class Record(NamedTuple):
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
    identity: NicIdentity = NicIdentity()  # proof of the NIC
    network: str = ""    # the network's `name` (Multus: the NAD's): GC releases only its own
    pod: str = ""        # "<K8S_POD_NAMESPACE>/<K8S_POD_NAME>" when the runtime sent them
    master: str = ""     # the bridge/bond the NIC was a port of (moved with node policy's opt-in)
    uppers: tuple[str, ...] = ()  # devices stacked on the NIC when it left (gone with the move)
    # The release that wrote the record as read (display only; a save writes this one's).
    # New optional fields go here, at the end, with a default (docs/design.md, Record formats).
    written_by: str = __version__
    device_info: str = ""  # the NPWG device-info file ADD wrote (plugin/devinfo.py); DEL removes it

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
        return f"{self.container_id}/{self.ifname}"

    def to_json(self) -> dict[str, Any]:
        return {**formats.record_header(),
                "containerID": self.container_id, "ifname": self.ifname,
                "deviceKey": self.device_key, "pciAddress": self.pci_address,
                "netns": self.netns, "phase": self.phase, "snapshot": self.snapshot.to_json(),
                "result": self.result, "created": self.created, "netnsID": self.netns_id,
                "orphanedSince": self.orphaned_since, "identity": self.identity.to_json(),
                "network": self.network, "pod": self.pod, "master": self.master,
                "uppers": list(self.uppers),
                **({"deviceInfo": self.device_info} if self.device_info else {})}

    @classmethod
    def from_json(cls, obj: object) -> Record:
        """A record read back, every field checked as if hostile (plugin/values.py); raises
        values.Corrupt (a ValueError) naming the field, or formats.Newer (code 11) for a
        record a newer release wrote. Older shapes are upgraded first (formats.upgrade).
        Add a field: add its check here, with the default older records read back as."""
        o = v.obj(obj, "record")
        formats.check_record(o, "record")
        o = formats.upgrade(o)
        result = o.get("result")
        return cls(container_id=v.container_id(o.get("containerID"), "containerID"),
                   ifname=v.ifname(o.get("ifname"), "ifname"),
                   device_key=device_key(o.get("deviceKey"), "deviceKey"),
                   pci_address=v.pci_address(o.get("pciAddress", ""), "pciAddress"),
                   netns=v.netns_path(o.get("netns", ""), "netns"),
                   phase=v.choice(o.get("phase"), "phase", PHASES),
                   snapshot=LinkSnapshot.from_json(o.get("snapshot")),
                   result=None if result is None else v.obj(result, "result"),
                   created=v.number(o.get("created", 0.0), "created"),
                   netns_id=_netns_id(o.get("netnsID", ""), "netnsID"),
                   orphaned_since=v.number(o.get("orphanedSince", 0.0), "orphanedSince"),
                   identity=NicIdentity.from_json(o.get("identity")),
                   written_by=formats.written_by(o),
                   **_attachment_fields(o))

    def with_phase(self, phase: str, result: Mapping[str, Any] | None = None) -> Record:
        return self._replace(phase=phase, result=result if result is not None else self.result)


_DISPLAY_MAX = 317  # a Kubernetes namespace (63) + "/" + a pod name (253)


def displayable(value: str) -> str:
    """value if it may be stored in a display-only field, else ""."""
    return value if len(value) <= _DISPLAY_MAX and value.isprintable() else ""


def _attachment_fields(obj: Mapping[str, Any]) -> dict[str, Any]:
    """network, pod, master, uppers: validated on read (a record is hostile input). network:
    any name ADD accepts (libcni's rule), or what older versions stored (printable)."""
    out: dict[str, Any] = {}
    for key in ("network", "pod", "master"):
        value = obj.get(key, "")
        if key == "network" and isinstance(value, str) and v.valid_network_name(value):
            out[key] = value  # whatever name ADD accepts (plugin/config.py) reads back
            continue
        if not isinstance(value, str) or displayable(value) != value:
            raise v.Corrupt(f"{key}: must be a printable string of at most {_DISPLAY_MAX} "
                             "characters")
        if key == "master" and value and not v.valid_ifname(value):
            raise v.Corrupt("master: not an interface name")
        out[key] = value
    uppers = obj.get("uppers", [])
    if not isinstance(uppers, list) or not all(isinstance(u, str) and v.valid_ifname(u)
                                               for u in uppers):
        raise v.Corrupt("uppers: must be a list of interface names")
    out["uppers"] = tuple(uppers)
    out["device_info"] = _device_info(obj.get("deviceInfo", ""))
    return out


def _device_info(value: object) -> str:
    """Optional: a path DEL unlinks, so only one ADD would have accepted (plugin/devinfo.py)."""
    if value == "":
        return ""
    from plugin import devinfo

    try:
        return devinfo.check_path(value, "deviceInfo", recorded=True)
    except CniError as e:
        raise ValueError(e.msg) from None


def _reads_back(data: bytes) -> None:
    """Refuse to write a record the reader would set aside: a field ADD stored that DEL could
    not read back would lose the NIC (the record is written before the NIC moves)."""
    try:
        if len(data) > MAX_FILE_BYTES:
            raise v.Corrupt(f"record: {len(data)} bytes, over {MAX_FILE_BYTES}")
        Record.from_json(json.loads(data))
    except (ValueError, RecursionError) as e:  # values.Corrupt is a ValueError
        why = "the record would not read back, so the NIC could not be given back"
        raise CniError(INVALID_CONFIG, f"refusing to record this attachment: {str(e)[:200]}",
                       why) from None


def device_key(value: object, what: str) -> str:
    """A PCI address, or `name:<netdev>` for NICs selected by name."""
    if isinstance(value, str) and value.startswith("name:"):
        v.ifname(value[5:], what)
        return value
    text = v.pci_address(value, what)
    if not text:
        raise v.Corrupt(f"{what}: empty")
    return text


def _netns_id(value: object, what: str) -> str:
    return v.matching(value, what, _NETNS_ID, "dev:inode")


def netns_identity(path: str) -> str:
    """"dev:inode" of the network namespace at `path`; "" when it is none (a FIFO, another
    kind of namespace, a planted symlink...): never blocks, never opens the file itself."""
    return netns.identity(path)


def _io_error(what: str, e: OSError) -> CniError:
    return CniError(IO_FAILURE, f"state store: {what}: {e.strerror or e}", str(e.filename or ""))


def read_regular(path: str, limit: int = MAX_FILE_BYTES) -> bytes | None:
    """A state file's bytes, never through a symlink (plugin/files.py)."""
    return files.read_regular(path, limit)


def set_aside(path: str, why: str) -> None:
    """Move a bad file (of any kind; rename never follows a symlink) out of every lookup."""
    aside = f"{path}.corrupt.{int(time.time())}.{os.urandom(4).hex()}"
    log.error(f"state file {path} is unusable ({why}); moved to {aside}")
    with contextlib.suppress(OSError):
        os.rename(path, aside)


def _check_dir(path: str) -> None:
    """Ours alone: a real directory (not a symlink), owned by the user we run as."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise CniError(IO_FAILURE, f"state store: {path} is not a directory (a symlink or a "
                       "file is refused)", "the state dir and its subdirs must be real dirs")
    if st.st_uid != os.geteuid():
        raise CniError(IO_FAILURE, f"state store: {path} is owned by uid {st.st_uid}, not "
                       f"{os.geteuid()}", "the state dir must be ours alone")


def file_name(container_id: str, ifname: str) -> str:
    """`<id>@<ifname>.json`, or, past 255 bytes, a prefix of the ID with a hash of the
    attachment ('~' is not in the container-ID alphabet, so it never equals a real ID)."""
    name = f"{container_id}@{ifname}.json"
    if len(name.encode()) <= _NAME_MAX:
        return name
    import hashlib  # only for IDs too long for a file name

    digest = hashlib.sha256(f"{container_id}@{ifname}".encode()).hexdigest()[:40]
    return f"{container_id[:128]}~{digest}@{ifname}.json"


class StateStore:
    def __init__(self, root: str, read_only: bool = False) -> None:
        """read_only (operators' `list`): nothing is created, and an unreadable record is
        left in place and listed in `unreadable` instead of being set aside."""
        self.root = root
        self._attachments = os.path.join(root, "attachments")
        self._devices = os.path.join(root, "devices")
        self._locks = os.path.join(root, "locks")
        self._ready = False
        self._described: bool | None = None  # format.json read (cached per store)
        self.read_only = read_only
        self.unreadable: list[tuple[str, str]] = []   # (path, why), filled when read_only
        self.newer: list[formats.Newer] = []  # records a newer release wrote (left untouched)

    # -- layout -------------------------------------------------------------------------------
    def ensure(self) -> None:
        """Create the layout where node policy says; refuse one that is not ours. Only the
        root's group/other bits are tightened: nothing else is chmod'ed."""
        if self._ready:
            return
        try:
            if not os.path.lexists(self.root):
                os.makedirs(self.root, mode=0o700, exist_ok=True)
            _check_dir(self.root)
            if os.lstat(self.root).st_mode & 0o077:
                os.chmod(self.root, 0o700, follow_symlinks=False)
            described = self._check_format()  # before anything is created in a newer layout
            for d in (self._attachments, self._devices, self._locks):
                with contextlib.suppress(FileExistsError):
                    os.mkdir(d, 0o700)
                _check_dir(d)
            if not described:
                self.write_file(os.path.join(self.root, formats.STORE_FILE), formats.store_file())
                self._described = True
            self._ready = True
        except OSError as e:
            raise _io_error(f"cannot create {self.root}", e) from None

    def _check_format(self) -> bool:
        """Whether the store says which format it is; formats.Newer (code 11) if a newer
        release laid it out: nothing in it is read or written then. A file we could not have
        written is set aside (not when read_only) and the layout taken as format 1, the one
        every release so far made."""
        if self._described is not None:
            return self._described
        path = os.path.join(self.root, formats.STORE_FILE)
        try:
            data = read_regular(path, 4096)
            formats.check_store(data)
        except (NotRegular, ValueError, RecursionError) as e:
            if self.read_only:
                self.unreadable.append((path, str(e)[:200]))
            else:
                set_aside(path, str(e)[:200])
            data = None
        self._described = data is not None
        return self._described

    def _record_path(self, container_id: str, ifname: str) -> str:
        return os.path.join(self._attachments, file_name(container_id, ifname))

    @staticmethod
    def _safe_key(key: str) -> str:
        return key.replace("/", "_")

    # -- locking ------------------------------------------------------------------------------
    def _open_lock(self, path: str) -> int:
        for _ in range(2):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | _OPEN_FLAGS, 0o600)
            except OSError as e:
                if e.errno not in (errno.ELOOP, errno.ENXIO, errno.EISDIR):
                    raise _io_error("cannot open lock", e) from None
                set_aside(path, "not a regular file")
                continue
            if stat.S_ISREG(os.fstat(fd).st_mode):
                return fd
            os.close(fd)
            set_aside(path, "not a regular file")
        raise CniError(IO_FAILURE, f"state store: cannot open lock {path}",
                       "something keeps replacing it")

    @contextlib.contextmanager
    def lock(self, device_key: str, timeout: float) -> Iterator[None]:
        """Exclusive per-device lock with a bounded wait: a stuck holder yields code 11."""
        started = time.perf_counter()
        self.ensure()
        path = os.path.join(self._locks, self._safe_key(device_key) + ".lock")
        fd = self._open_lock(path)
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
            profile.add("state I/O (lock)", time.perf_counter() - started)
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
    @staticmethod
    def _tmp_name(path: str) -> str:
        directory, name = os.path.split(path)
        return os.path.join(directory, f".{name[:64]}.tmp.{os.urandom(8).hex()}")

    def write_file(self, path: str, data: bytes, durable: bool = True) -> None:
        tmp = self._tmp_name(path)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, 0o600)
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
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def save(self, record: Record, durable: bool = True) -> None:
        """Write the record, then point the device index at it. durable=False skips the
        fsyncs (still atomic): for updates whose loss a later DEL survives anyway."""
        with profile.span("state I/O"):
            self._save(record, durable)

    def _save(self, record: Record, durable: bool) -> None:
        self.ensure()
        path = self._record_path(record.container_id, record.ifname)
        data = json.dumps(record.to_json(), sort_keys=True).encode()
        _reads_back(data)
        self.write_file(path, data, durable)
        index = os.path.join(self._devices, self._safe_key(record.device_key))
        target = os.path.relpath(path, self._devices)
        try:
            if os.readlink(index) == target:
                return
        except OSError:
            pass
        tmp = self._tmp_name(index)
        try:
            os.symlink(target, tmp)
            os.replace(tmp, index)
            self._fsync_dir(self._devices)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise _io_error("cannot write device index", e) from None

    def _load(self, path: str, attachment: str = "") -> Record | None:
        with profile.span("state I/O"):
            return self._read(path, attachment)

    def _read(self, path: str, attachment: str = "") -> Record | None:
        try:
            data = read_regular(path)
            if data is None:
                return None
            obj = json.loads(data)
            if isinstance(obj, dict):  # a newer release's record: formats.Newer, untouched
                formats.check_record(obj, f"record {os.path.basename(path)[:300]}")
            record = Record.from_json(obj)
            if os.path.basename(path) != file_name(record.container_id, record.ifname):
                raise v.Corrupt(f"it names attachment {record.attachment[:80]!r}")
        except (NotRegular, ValueError, KeyError, TypeError, RecursionError) as e:
            if self.read_only:  # `list`: report it, change nothing
                self.unreadable.append((path, str(e)[:200]))
                return None
            # One bad file must not block every other attachment: set it aside, keep going.
            set_aside(path, f"{e}"[:300])
            return None
        except OSError as e:
            raise _io_error(f"cannot read {path}", e) from None
        return record

    def _layout_ours(self) -> bool:
        """Before any read: False if there is no store yet; a root or attachments/ that is a
        symlink or not ours is refused (reads must not go through it either)."""
        try:
            _check_dir(self.root)
            _check_dir(self._attachments)
            self._check_format()
        except FileNotFoundError:
            return False
        except OSError as e:
            raise _io_error(f"cannot look at {self.root}", e) from None
        return True

    def load(self, container_id: str, ifname: str) -> Record | None:
        if not self._layout_ours():
            return None
        return self._load(self._record_path(container_id, ifname))

    def holder_of(self, device_key: str) -> Record | None:
        """The attachment the index says holds this device, if its record still exists and
        names this device. The index must point at a file in attachments/ whose record holds
        this device: anything else is set aside, never followed."""
        if not self._layout_ours():
            return None
        index = os.path.join(self._devices, self._safe_key(device_key))
        try:
            _check_dir(self._devices)
            target = os.readlink(index)
        except FileNotFoundError:
            return None
        except OSError:  # not a symlink: not ours
            set_aside(index, "not an index symlink")
            return None
        head, name = os.path.split(target)
        if head != os.path.join("..", "attachments") or not name.endswith(".json") \
                or name.startswith("."):
            set_aside(index, f"points outside attachments/ ({target[:80]!r})")
            return None
        record = self._load(os.path.join(self._attachments, name))
        if record is not None and record.device_key != device_key:
            # Another device's record: a wrong index, never proof this device is held.
            set_aside(index, f"points at {record.attachment[:80]!r}, which holds "
                      f"{record.device_key}")
            return None
        return record

    def remove(self, record: Record) -> None:
        with profile.span("state I/O"):
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
        """Every readable record; a bad or unreadable file is logged and skipped, never the
        end of a sweep."""
        if not self._layout_ours():
            return []
        try:
            names = sorted(os.listdir(self._attachments))
        except FileNotFoundError:
            return []
        except OSError as e:
            raise _io_error(f"cannot list {self._attachments}", e) from None
        found = []
        for name in names:
            if name.endswith(".json") and not name.startswith("."):
                try:
                    record = self._load(os.path.join(self._attachments, name))
                except formats.Newer as e:
                    log.warn(f"{e.msg}; skipped")
                    self.newer.append(e)
                    continue
                except CniError as e:
                    log.error(f"{name}: {e.msg}; skipped")
                    continue
                if record:
                    found.append(record)
        return found
