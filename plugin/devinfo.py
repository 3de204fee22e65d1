"""The NPWG device-info file (k8snetworkplumbingwg/device-info-spec): what Multus puts in the
pod's network-status as `device-info`, so workloads can map an interface to its NIC.

When the NAD declares the `CNIDeviceInfoFile` capability, Multus passes
`runtimeConfig.CNIDeviceInfoFile`, a path under its devinfo dir, unique per attachment. The NAD
is tenant input and a runtimeConfig it writes itself reaches us untouched: a path anywhere
else than `<devinfo>/cni/<one name>` is refused (code 7) before anything happens. Writing
never follows a symlink below the devinfo root: each directory is opened O_NOFOLLOW from the
last, the file is written under an unpredictable temp name (O_EXCL) and renamed into place (a
rename replaces a planted symlink, never writes through it). A regular file already there is
the device plugin's, copied by Multus (the spec lets a CNI read it): left alone, not ours.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat

from plugin import device, log, settings
from plugin.errors import INVALID_CONFIG, CniError
from plugin.values import is_pci

SPEC_VERSION = "1.1.0"
DIR_ENV = settings.DEVINFO_DIR_ENV   # trusted runtime env (tests), never a NAD key
DEFAULT_ROOTS = ("/var/run/k8s.cni.cncf.io/devinfo", "/run/k8s.cni.cncf.io/devinfo")
CNI_SUBDIR = "cni"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:@+=,\-]{0,254}")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def roots(recorded: bool = False) -> tuple[str, ...]:
    """Where device-info may be written: Multus's dir, or the override alone. A path read
    back from a record may be in either (recorded=True): a record must not turn corrupt
    because the environment of the process reading it differs."""
    override = settings.current().devinfo_dir
    if not override.startswith("/"):
        return DEFAULT_ROOTS
    return (os.path.normpath(override), *(DEFAULT_ROOTS if recorded else ()))


def check_path(value: object, what: str = "runtimeConfig.CNIDeviceInfoFile",
               recorded: bool = False) -> str:
    """The path if it names one file in a devinfo root's cni/ dir; else code 7 naming why."""
    if not isinstance(value, str) or not value:
        raise CniError(INVALID_CONFIG, f"invalid {what}: must be a non-empty string")
    directory, name = os.path.split(value)
    allowed = [os.path.join(r, CNI_SUBDIR) for r in roots(recorded)]
    if (os.path.normpath(value) != value or directory not in allowed
            or not _NAME.fullmatch(name)):
        raise CniError(INVALID_CONFIG, f"invalid {what}={value[:120]!r}: must name a file in "
                       f"{' or '.join(allowed)}",
                       "a network configuration must not choose where the plugin writes")
    return value


def info(pci_address: str) -> dict[str, object]:
    """The device-info for a PCI NIC: its address, and its PF when it is a VF (sysfs)."""
    pci: dict[str, str] = {"pci-address": pci_address}
    with contextlib.suppress(OSError):
        pf = os.path.basename(os.readlink(os.path.join(device.pci_dir(pci_address), "physfn")))
        if is_pci(pf):
            pci["pf-pci-address"] = pf
    return {"type": "pci", "version": SPEC_VERSION, "pci": pci}


def _root_for(path: str) -> str:
    return next(r for r in roots(recorded=True)
                if os.path.dirname(path) == os.path.join(r, CNI_SUBDIR))


def _open_dir(path: str, create: bool) -> int:
    """The cni/ dir of `path`'s root, each part below the root's parent opened without
    following symlinks (created, 0755, when `create`)."""
    root = _root_for(path)
    parent, rest = _trusted_parent(root)
    fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in [*rest, CNI_SUBDIR]:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
            nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nxt
        return fd
    except BaseException:
        os.close(fd)
        raise


def _trusted_parent(root: str) -> tuple[str, list[str]]:
    """Where symlinks stop being followed: below /run (or /var/run, itself a symlink to /run
    on most nodes); for a test root, below its parent."""
    for base in ("/var/run", "/run"):
        if root.startswith(base + "/"):
            return base, root[len(base) + 1:].split("/")
    parent, last = os.path.split(root)
    return parent, [last]


def write(path: str, content: dict[str, object]) -> bool:
    """Write the file atomically; False (and nothing changed) if a regular file is already
    there (the device plugin's, copied by Multus)."""
    name = os.path.basename(path)
    fd = _open_dir(path, create=True)
    try:
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISREG(st.st_mode):
                log.event(f"{path} exists (the device plugin's device-info): left as it is")
                return False
        except FileNotFoundError:
            pass
        tmp = f".{name[:64]}.tmp.{os.urandom(8).hex()}"
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                      0o644, dir_fd=fd)
        try:
            os.write(out, json.dumps(content).encode())
            os.fsync(out)
        finally:
            os.close(out)
        try:
            os.rename(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=fd)
            raise
        return True
    finally:
        os.close(fd)


def remove(path: str) -> None:
    """Remove the file ADD wrote; gone already is fine, and nothing else is ever followed."""
    if not path:
        return
    try:
        fd = _open_dir(path, create=False)
    except FileNotFoundError:
        return
    except OSError as e:
        log.warn(f"cannot remove {path}: {e}")
        return
    try:
        os.unlink(os.path.basename(path), dir_fd=fd)
        log.event(f"removed the device-info file {path}")
    except FileNotFoundError:
        pass
    except OSError as e:
        log.warn(f"cannot remove {path}: {e}")
    finally:
        os.close(fd)
