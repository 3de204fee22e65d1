"""Is a path a network namespace? Asked before a recorded (or CNI_NETNS) path is trusted.

A record's `netns` is re-read from disk and may name anything: a FIFO (nsenter would block in
open() for ever, and DEL or GC with it), a device (opening some has side effects), or another
kind of namespace such as /proc/self/ns/mnt (setns fails every time: DEL could never succeed).
So the path is opened with O_PATH, which never opens the file itself (no FIFO wait, no device
open), then checked:
- it is an nsfs inode: a regular file on the one superblock every namespace file lives on
  (the one /proc/self/ns/net is on; as good as fstatfs's NSFS_MAGIC, without ctypes);
- it is a *network* namespace: ioctl NS_GET_NSTYPE == CLONE_NEWNET, asked on a real descriptor
  reopened through /proc/self/fd (an nsfs inode, so opening it does nothing).
O_NOFOLLOW refuses a planted symlink, except the kernel's own /proc/<pid>/ns/net form, whose
last component is a magic link that must be followed.
"""

from __future__ import annotations

import fcntl
import os
import re
import stat

NS_GET_NSTYPE = 0xB703     # _IO(0xb7, 0x3), <linux/nsfs.h>
CLONE_NEWNET = 0x40000000  # <linux/sched.h>
# The kernel's own magic links; any other symlink is refused.
_PROC_NS = re.compile(r"/proc/(self|thread-self|[1-9][0-9]*)(/task/[1-9][0-9]*)?/ns/net")


def _nsfs_dev() -> int:
    return os.stat("/proc/self/ns/net").st_dev


def identity(path: str) -> str:
    """"dev:inode" of the network namespace at `path`, or "" when it is none (missing, a FIFO,
    a regular file, another kind of namespace, a planted symlink). Never blocks."""
    if not path or not os.path.isabs(path):
        return ""
    flags = os.O_PATH | os.O_CLOEXEC | (0 if _PROC_NS.fullmatch(path) else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except (OSError, ValueError):
        return ""
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_dev != _nsfs_dev():
            return ""
        return f"{st.st_dev}:{st.st_ino}" if _is_net(fd) else ""
    except OSError:
        return ""
    finally:
        os.close(fd)


def _is_net(path_fd: int) -> bool:
    fd = os.open(f"/proc/self/fd/{path_fd}", os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        return fcntl.ioctl(fd, NS_GET_NSTYPE) == CLONE_NEWNET
    finally:
        os.close(fd)


def is_net(path: str) -> bool:
    return bool(identity(path))
