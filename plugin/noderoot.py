"""Where am I: in the node's root, or in a container's (Multus thick without `chrootDir`)?

Multus thick execs its delegates inside the multus-daemon container. With `chrootDir` it
chroots to the node's root first; without it the plugin would read policy, keep its records
and look for the daemon's socket in the container's own layer, and a later DEL from the node's
root (or from a restarted container) would find nothing. So every CNI command but VERSION asks
first, in a few stat calls, and re-execs itself in the node's root when it is elsewhere: after
that it is the normal node path (policy, state, daemon socket, tools), the only one there is.

The rule (docs/design.md, "Where the plugin runs"):
- `/` is PID 1's root (`/proc/1/root`): we are home (a node, kind's node container, a chroot
  Multus made to the node's root).
- PID 1's root cannot be looked into although we hold CAP_SYS_PTRACE: PID 1 is not a node's
  init we were deployed under (a sandbox's supervisor, as on the test machine): stay.
- Without CAP_SYS_PTRACE: an unprivileged container with hostPID: the node is out of reach.
- Another root that holds this very installation (same st_dev/st_ino) at the same absolute
  path (Multus mounts /opt/cni/bin at the same path): the node's root. Enter it as `nsenter -t 1
  -m -r` does (PID 1's mount namespace, then its root) and exec the same entry again. A plain
  chroot would not do: `ip -n` remounts /sys, which fails in a foreign mount namespace's tree.
- Another root without it: the node is out of reach (the CNI bin dir is not where it is on
  the node).
Out of reach: an error that says what to change; DEL says 11 (try again later), never
"nothing recorded".

Imports nothing beyond `os` on the way home: this runs at every pod start.
"""

from __future__ import annotations

import os
import sys

from plugin.errors import NODE_ROOT_UNREACHABLE, NOT_AVAILABLE, TRY_AGAIN_LATER, CniError

ENTRY_ENV = "AMD_HOST_DEVICE_ENTRY"      # the path the runtime exec'd, if argv[0] is not it
ENTERED_ENV = "AMD_HOST_DEVICE_ENTERED"  # set on the re-exec: a second entry is a loop
PID1_ROOT = "/proc/1/root"
PID1_MNT = "/proc/1/ns/mnt"
CLONE_NEWNS = 0x00020000
CAP_SYS_PTRACE = 19
_MAX_LINKS = 40
FIX = ("set chrootDir (e.g. \"/hostroot\") in Multus's daemon-config, or run the caller's "
       "container privileged with hostPID and the node's CNI bin dir at the same path")


class Unreachable(Exception):
    """We run in another root than the node's and cannot get there."""


def entry_path() -> str:
    """The executable the runtime exec'd, absolute (the re-exec runs it again in the node's
    root, where the CNI bin dir has the same path)."""
    return os.environ.get(ENTRY_ENV) or os.path.abspath(sys.argv[0])


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def stat_under(root: str, path: str) -> os.stat_result:
    """stat(path) as a process whose root is `root` sees it. The kernel resolves an absolute
    symlink met under /proc/1/root against *our* root, so links are followed here, each
    against `root` (a node whose /opt/cni/bin links to /usr/libexec/cni)."""
    parts = [p for p in path.split("/") if p and p != "."]
    done: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        here = "/".join([root, *done, part])
        target = os.readlink(here) if os.path.islink(here) else None
        if target is None:
            done.append(part)
            continue
        links += 1
        if links > _MAX_LINKS:
            raise OSError(40, "too many levels of symbolic links", here)  # ELOOP
        if target.startswith("/"):
            done = []
        parts[:0] = [p for p in target.split("/") if p and p != "."]
    return os.stat("/".join([root, *done]))


def _has_cap(bit: int) -> bool:
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"CapEff:"):
                    return bool(int(line.split()[1], 16) >> bit & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


def elsewhere(entry: str, root: str = PID1_ROOT, ours: str = "/") -> bool:
    """False: we are in the node's root (or nothing shows we are not). True: we are in another
    root and `root` (PID 1's) holds this installation at `entry`: enter it. Unreachable:
    we are elsewhere and cannot act in the node's root."""
    try:
        theirs = os.stat(root)
    except PermissionError as e:
        if os.geteuid() != 0 or _has_cap(CAP_SYS_PTRACE):
            # Not root: nothing here would work anyway (the daemon refuses such callers).
            # Root with CAP_SYS_PTRACE and still refused: PID 1 is guarded beyond
            # capabilities, not a node's init we serve (a sandbox's supervisor).
            return False
        raise Unreachable(f"cannot see the node's root {root}: {e.strerror}, and this process "
                          "lacks CAP_SYS_PTRACE (an unprivileged container with hostPID?)") from None
    except OSError:
        return False       # no /proc, no PID 1: nothing shows another root
    if _same(theirs, os.stat(ours)):
        return False
    try:
        mine = os.stat(entry)
        holds = _same(mine, stat_under(root, entry))
    except OSError:
        holds = False
    if not holds:
        raise Unreachable(f"this process runs in another root than the node's (PID 1's), and "
                          f"the node's root does not have this plugin at {entry}")
    return True


def enter(entry: str, root: str = PID1_ROOT, mnt: str = PID1_MNT) -> None:
    """Join PID 1's mount namespace and root, then exec `entry` there with the same argv, env
    and stdin (stdin is not read before this). Returns only by raising Unreachable."""
    fds: list[int] = []
    try:
        want = os.stat(root)
        fds.append(os.open(root, os.O_RDONLY | os.O_DIRECTORY))
        fds.append(os.open(mnt, os.O_RDONLY))
    except OSError as e:
        for fd in fds:
            os.close(fd)
        raise Unreachable(f"cannot open the node's root {root}: {e.strerror}") from None
    root_fd, ns_fd = fds
    try:
        _setns(ns_fd)
        os.fchdir(root_fd)
        os.chroot(".")
        os.chdir("/")
    except OSError as e:
        raise Unreachable(f"cannot enter the node's root {root}: {e.strerror} (entering takes "
                          "CAP_SYS_ADMIN and CAP_SYS_CHROOT)") from None
    finally:
        os.close(root_fd)
        os.close(ns_fd)
    if not _same(os.stat("/"), want):
        raise Unreachable(f"entered PID 1's mount namespace, but / is not {root}")
    env = dict(os.environ)
    env[ENTERED_ENV] = "1"
    try:
        os.execve(entry, [entry, *sys.argv[1:]], env)
    except OSError as e:
        raise Unreachable(f"cannot exec {entry} in the node's root: {e.strerror}") from None


def _setns(fd: int) -> None:
    setns = getattr(os, "setns", None)   # Python 3.12+
    if setns is not None:
        setns(fd, CLONE_NEWNS)
        return
    import ctypes  # 3.11: only on this rare path (a few ms)

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def error(command: str, why: str) -> CniError:
    """The answer when the node's root is out of reach: DEL must be retried (its record is on
    the node), STATUS is the spec's "not available", the rest say what to change."""
    if command == "DEL":
        return CniError(TRY_AGAIN_LATER, f"not in the node's root, and cannot get there: {why}",
                        f"the attachment's record is on the node, not here; {FIX}, then DEL "
                        "again")
    code = NOT_AVAILABLE if command == "STATUS" else NODE_ROOT_UNREACHABLE
    return CniError(code, f"not in the node's root, and cannot get there: {why}",
                    f"nothing was changed; {FIX}")


def ensure(command: str) -> None:
    """Return when we are in the node's root; re-exec there when we are not (no return);
    raise the command's CniError when we cannot."""
    try:
        entry = entry_path()
        if not elsewhere(entry):
            return
        if os.environ.get(ENTERED_ENV):
            raise Unreachable("re-executed in the node's root, and still not there")
        from plugin import log

        log.event(f"running in another root than the node's: entering PID 1's root to run "
                  f"{entry} there")
        enter(entry)
    except Unreachable as e:
        raise error(command, str(e)) from None
