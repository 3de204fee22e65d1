"""Reading a small file that someone else may have planted something in place of.

One reader for the state store, AMD's legacy mappings, the delegate's cache, node policy and
`doctor`: it never blocks on a FIFO, reads only a regular file, and is bounded in size. State
files never follow a symlink (`follow=False`); admin files do (a ConfigMap mount is a symlink
chain to a regular file), but still only a regular file is read. Imports nothing heavy:
node policy is read on every CNI call.
"""

from __future__ import annotations

import errno
import os
import stat


class NotRegular(Exception):
    """The path is a symlink (when not followed), FIFO, directory, device or socket, or too
    large: never read."""


def read_regular(path: str, limit: int, follow: bool = False) -> bytes | None:
    """The bytes of the regular file at path; None if there is none. NotRegular for anything
    else; OSError for real I/O errors."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR):  # symlink, socket/FIFO, dir
            raise NotRegular(f"{path} is not a regular file") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegular(f"{path} is not a regular file ({stat.filemode(st.st_mode)[0]})")
        data = b""
        while len(data) <= limit:
            chunk = os.read(fd, limit + 1 - len(data))
            if not chunk:
                break
            data += chunk
        if len(data) > limit:
            raise NotRegular(f"{path} is larger than {limit} bytes")
        return data
    finally:
        os.close(fd)
