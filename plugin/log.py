"""One logfmt line per event (`ts=… level=info pod=ns/name container=… msg="…"`), so grep,
Loki and journald filters work.

Lines go to a sink: stderr by default (the runtime's or Multus's log; stdout carries the CNI
result), the daemon's stdout once `set_sink` points there. Node policy may add a size-capped
log file (`to_file`), never a NAD key: a tenant-chosen path would be a write-anywhere
primitive. Logging is best effort: nothing here ever raises, because a closed stderr or a full
disk must not fail an ADD after the NIC moved.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Mapping

_context: dict[str, str] = {}
PLUGIN = "amd-host-device"


def bind(**fields: str) -> None:
    """Fields repeated on every later line (command, pod, container, ifname, device)."""
    _context.update({k: v for k, v in fields.items() if v})


def pod_of(cni_args: Mapping[str, str]) -> str:
    """namespace/name from the runtime's CNI_ARGS (kubelet and Multus set both), or ""."""
    name = cni_args.get("K8S_POD_NAME", "")
    if not name:
        return ""
    namespace = cni_args.get("K8S_POD_NAMESPACE", "")
    return f"{namespace}/{name}" if namespace else name


def _value(text: str) -> str:
    """logfmt: bare when it is plain printable ASCII without space, quote, '=' or backslash;
    else a quoted string, made safe by display.safe (a log viewer that decodes the quoted
    value must not put a pod's terminal escape on a screen either) and with every non-ASCII
    character escaped, so one event is always exactly one line."""
    if text and all("!" <= c <= "~" and c not in '"=\\' for c in text):
        return text
    import json

    from plugin.display import safe

    return json.dumps(safe(text))  # ensure_ascii: the rest of non-ASCII is escaped too


def format_line(level: str, msg: str, fields: Mapping[str, str], now: float) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
    words = [f"ts={stamp}.{int(now * 1000) % 1000:03d}Z", f"level={level}", f"plugin={PLUGIN}"]
    words += [f"{k}={_value(v)}" for k, v in fields.items()]
    words.append(f"msg={_value(msg)}")
    return " ".join(words) + "\n"


def write_stderr(line: str) -> None:
    """Best-effort: a closed stderr (the runtime or Multus died mid-ADD) must not fail the
    command, or an ADD would stop between moving the NIC and answering. After the first
    failure fd 2 points at /dev/null, so the unwritten rest and the exit-time flush cannot
    fail either."""
    try:
        sys.stderr.write(line)
        sys.stderr.flush()
    except (OSError, ValueError):
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


_sink: Callable[[str], None] = write_stderr


def set_sink(sink: Callable[[str], None] | None) -> None:
    """Where lines go instead of stderr (the daemon: its stdout, `kubectl logs`); None
    restores stderr."""
    global _sink
    _sink = sink or write_stderr


_ROTATE_TRIES = 8


class _LogFile:
    """An append-only file the node's admin chose, rotated by size (one `.1` kept), so it
    never holds more than twice its cap; opened without following a symlink, 0600; the first
    failure (a full disk, a quota) stops it for the rest of the process."""

    __slots__ = ("fd", "max_bytes", "path")

    def __init__(self, path: str, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.fd = -1

    def _open(self) -> int:
        flags = (os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
                 | os.O_NONBLOCK)  # a FIFO planted at the path must not hang us
        fd = os.open(self.path, flags, 0o600)
        try:
            import stat

            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(f"{self.path} is not a regular file")
            vfs = os.fstatvfs(fd)
            if vfs.f_bavail * vfs.f_frsize < self.max_bytes:
                raise OSError(f"less than {self.max_bytes} bytes free for {self.path}")
        except OSError:
            os.close(fd)
            raise
        return fd

    def write(self, line: str) -> None:
        """Under the file's flock, write only to the file that is still at `path` and still
        has room; otherwise rotate or follow another process's rotation and look again (a
        lock taken on a file that was rotated meanwhile proves nothing)."""
        import fcntl

        data = line.encode("utf-8", "replace")
        for _ in range(_ROTATE_TRIES):
            if self.fd < 0:
                self.fd = self._open()
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            try:
                try:
                    current = os.stat(self.path).st_ino
                except FileNotFoundError:
                    current = -1
                st = os.fstat(self.fd)
                if current == st.st_ino:
                    if st.st_size == 0 or st.st_size + len(data) <= self.max_bytes:
                        os.write(self.fd, data)
                        return
                    os.replace(self.path, self.path + ".1")
            finally:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            self.close()  # rotated, by us or another process: open the new one
        raise OSError(f"{self.path} kept rotating under us")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


_file: _LogFile | None = None


def to_file(path: str, max_bytes: int) -> None:
    """Also write to `path` (node policy's logFile); "" turns the file off."""
    global _file
    if _file is not None:
        with contextlib.suppress(OSError):
            _file.close()
    _file = _LogFile(path, max_bytes) if path else None


def _emit(level: str, msg: str) -> None:
    global _file
    line = format_line(level, msg, _context, time.time())
    # A closed stderr or pipe: logging must never fail a command.
    with contextlib.suppress(OSError, ValueError):
        _sink(line)
    if _file is not None:
        try:
            _file.write(line)
        except OSError as e:
            broken, _file = _file, None
            with contextlib.suppress(OSError):
                broken.close()
            with contextlib.suppress(OSError, ValueError):
                _sink(format_line("warn", f"log file {broken.path}: {e}; no longer writing it",
                                  _context, time.time()))


def event(msg: str) -> None:
    _emit("info", msg)


def warn(msg: str) -> None:
    _emit("warn", msg)


def error(msg: str) -> None:
    _emit("error", msg)
