"""The node, as the plugin acts on it: `Node` is the one place a process starts.

- `Node.run`: ip, ethtool and nsenter (argv written with the tool's name first; plugin/tools.py
  picks the bundle's copy or the node's), one at a time in this process's command shell.
- `Node.spawn`: a program in its own process group (the delegate, which runs IPAM plugins in
  turn), killed with everything it started at its deadline or when we are interrupted.
plugin/backend.py turns `run`'s answers into reads and changes (ip -j, ip -batch, ethtool);
plugin/delegate.py finds host-device and speaks CNI to it through `spawn`.

The command shell: one POSIX shell (the bundle's dash, or the node's /bin/sh from a checkout),
started through `sh` (the package), that runs a request's ip/ethtool commands in turn.

Each command `sh` starts forks this Python process and starts I/O threads for it: ~3 ms a
command over the exec itself, a dozen times per pod. Here `sh` starts one shell per process
(per request in the daemon, whose children are forks), and every command after that costs what
its exec costs. The shell's script is fixed text; values never become shell code:

- a request is lines on the shell's stdin: the number of argv words, the words, the number of
  stdin lines, the lines. A word or line with a newline or NUL would shift that framing, so it
  is refused before anything is sent;
- the shell runs `"$@"`, stdin from the lines (or /dev/null), then prints a marker carrying a
  random per-shell nonce and the exit code on stdout, and the marker on stderr. Output and
  errors are what came before the markers. Nothing a pod controls can forge a marker: it does
  not know the nonce (sent on stdin, not in the world-readable command line), and `ip -j`
  escapes newlines in strings;
- a command that has not answered by its deadline is killed with the whole shell (its own
  process group; the commands stay in it: the shell has no job control), and the next command
  gets a new shell. No `timeout` process per command: that would cost each one an exec;
- if the caller dies (SIGKILL, the OOM killer), a watchdog in the shell's group sees the
  caller's end of a pipe close and kills the group: no command outlives its caller.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from plugin import tools
from plugin.imports import load_sh

# The first line on stdin is the nonce (not an argument: /proc/<pid>/cmdline is world-
# readable). Reads are line by line (`read` in dash takes one byte at a time from a pipe), so
# nothing after a request is consumed with it; a request's stdin lines are all read before its
# command runs, so a command that exits without reading them leaves none behind.
# $1 is the read end of the lifeline: the caller holds the write end and never writes, so EOF
# means the caller is gone (killed, or done); then the watchdog kills the whole group (this
# shell, a command stuck in the kernel's way or anyone's, itself): nothing outlives its caller.
_SCRIPT = r"""
IFS= read -r nonce || exit 1
{ read -r _ <&"$1"; kill -KILL 0; } </dev/null >/dev/null 2>&1 &
while IFS= read -r n; do
  set --
  while [ "$n" -gt 0 ]; do IFS= read -r w; set -- "$@" "$w"; n=$((n-1)); done
  IFS= read -r k
  if [ "$k" -gt 0 ]; then
    i=
    while [ "$k" -gt 0 ]; do IFS= read -r l; i="$i$l
"; k=$((k-1)); done
    printf '%s' "$i" | "$@"
  else
    "$@" </dev/null
  fi
  rc=$?
  printf '\n%s %s\n' "$nonce" "$rc"
  printf '\n%s\n' "$nonce" >&2
done
"""


class Unframed(ValueError):
    """A word or stdin line that would break the framing (a newline or NUL): never sent."""


class ShellGone(Exception):
    """The shell exited; the next command gets a new one."""


class ShellStuck(ShellGone):
    """The command did not answer by its deadline: it is killed with the shell."""


class _Sink:
    """Where sh writes the shell's stdout or stderr, a line at a time: an object with write()
    (sh decodes for it, as `encoding` says), not a callback, which sh would inspect."""

    __slots__ = ("chunks", "cond")
    encoding = "utf-8"

    def __init__(self, cond: threading.Condition) -> None:
        self.chunks: list[str] = []
        self.cond = cond

    def write(self, text: str) -> None:
        with self.cond:
            self.chunks.append(text)
            self.cond.notify_all()


class _Shell:
    __slots__ = ("cond", "done", "err", "lifeline", "lock", "nonce", "out", "owner", "proc",
                 "queue")

    def __init__(self) -> None:
        import queue

        sh = load_sh()
        self.owner = os.getpid()
        self.nonce = os.urandom(12).hex()
        self.lock = threading.Lock()      # one command at a time
        self.cond = threading.Condition()
        self.out = _Sink(self.cond)
        self.err = _Sink(self.cond)
        self.done = False
        self.queue: Any = queue.Queue()
        self.queue.put(f"{self.nonce}\n".encode())
        ours, theirs = os.pipe()   # the lifeline (see _SCRIPT); ours is close-on-exec
        os.set_inheritable(ours, True)
        try:
            # By path (never PATH): the bundle's own, through its loader; else /bin/sh.
            shell = tools.tool("sh").argv
            self.proc = sh.Command(shell[0])(
                *shell[1:], "-c", _SCRIPT, "amd-host-device-shell", str(ours), _pass_fds={ours},
                _bg=True, _bg_exc=False, _in=self.queue, _new_group=True,
                _out=self.out, _err=self.err, _done=self._on_done, _tty_out=False,
                _out_bufsize=1, _err_bufsize=1, _encoding="utf-8",
                _decode_errors="surrogateescape")
        except BaseException:
            os.close(theirs)
            raise
        finally:
            os.close(ours)
        self.lifeline = theirs   # held, never written, for as long as this process lives

    def _on_done(self, *_: object) -> None:
        with self.cond:
            self.done = True
            self.cond.notify_all()

    def run(self, argv: Sequence[str], stdin: Sequence[str], seconds: float) -> tuple[int, str, str]:
        for text in (*argv, *stdin):
            if "\n" in text or "\0" in text:
                raise Unframed(f"refusing a command word or line with a newline or NUL: "
                               f"{text[:80]!r}")
        request = "\n".join((str(len(argv)), *argv, str(len(stdin)), *stdin)) + "\n"
        end_out, end_err = f"\n{self.nonce} ", f"\n{self.nonce}\n"
        deadline = time.monotonic() + seconds
        with self.lock:
            try:
                # Bytes: a name the kernel allows need not be UTF-8; surrogateescape gives
                # back the very bytes `ip` printed (and keeps two such names apart).
                self.queue.put(request.encode("utf-8", "surrogateescape"))
                with self.cond:
                    while True:
                        out, err = "".join(self.out.chunks), "".join(self.err.chunks)
                        at = out.rfind(end_out)
                        if at >= 0 and out.endswith("\n") and end_err in err:
                            break
                        left = deadline - time.monotonic()
                        if self.done or left <= 0:
                            if self.done:
                                raise ShellGone("the command shell exited")
                            raise ShellStuck("the command shell stopped answering")
                        self.cond.wait(left)
                    self.out.chunks.clear()
                    self.err.chunks.clear()
                return int(out[at + len(end_out):]), out[:at], err[:err.rindex(end_err)]
            except BaseException:
                # Interrupted (SIGTERM's SystemExit, a timeout) or out of step: the command
                # may still answer later, into the next one's reply. This shell is done.
                self._kill()
                raise

    @property
    def usable(self) -> bool:
        """This process's, and not exited."""
        return self.owner == os.getpid() and not self.done

    def _kill(self) -> None:
        """The shell and whatever it runs: its process group."""
        global _SHELL
        _SHELL = None
        with contextlib.suppress(OSError):  # gone already
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.close(self.lifeline)


_SHELL: _Shell | None = None
_STARTING = threading.Lock()


def current() -> _Shell:
    """This process's shell, started if need be: `.run(argv, stdin_lines, seconds)` gives
    (exit code, stdout, stderr) of argv; ShellStuck if it has not answered in `seconds`.
    One inherited across fork belongs to the parent: a child starts its own; one that exited
    is replaced."""
    global _SHELL
    with _STARTING:
        shell = _SHELL
        if shell is None or not shell.usable:
            if shell is not None and shell.owner == os.getpid():
                shell._kill()   # exited by itself: its group and its lifeline go too
            from plugin import profile

            load_sh()  # its own profile bucket
            with profile.span("command shell start"):
                try:
                    shell = _SHELL = _Shell()
                except Exception as e:  # sh's ErrorReturnCode/CommandNotFound, OSError
                    raise ShellGone(f"cannot start the command shell "
                                    f"({tools.tool('sh').describe()}): {e}") from None
        return shell


def discard() -> None:
    """Kill this process's shell, if it has one (tests: one left out of step by a test must
    not answer the next)."""
    with _STARTING:
        shell = _SHELL
    if shell is not None and shell.owner == os.getpid():
        shell._kill()


def start_soon() -> None:
    """Start the shell in the background while the request does its command-free first steps
    (config, policy, state); its first command waits for it. For processes that will run
    commands (the daemon's request children): starting it costs a fork."""

    def start() -> None:
        with contextlib.suppress(ShellGone):
            current()

    if _SHELL is None or not _SHELL.usable:   # a spare has one already
        threading.Thread(target=start, daemon=True).start()


def run(argv: Sequence[str], stdin: Sequence[str] = (), seconds: float = 30.0) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of argv in this process's shell."""
    return current().run(argv, stdin, seconds)


class Finished(NamedTuple):
    """A spawned program's exit code and output."""

    code: int
    stdout: bytes
    stderr: bytes


class Unanswered(Exception):
    """A spawned program did not end by its deadline: its process group was killed."""


class Node:
    """This node's processes. Stateless: the command shell is this process's (a forked child
    starts its own); tests hand ADD and DEL another object with the same methods."""

    __slots__ = ()

    def run(self, argv: Sequence[str], stdin: Sequence[str] = (),
            seconds: float = 30.0) -> tuple[int, str, str]:
        """(exit code, stdout, stderr) of argv, run in this process's command shell; Unframed
        (never sent), ShellStuck (killed at `seconds`) or ShellGone."""
        from plugin import profile

        shell = current()   # its start is profiled on its own
        started = time.monotonic()
        try:
            return shell.run(tools.expand(argv), stdin, seconds)
        finally:
            profile.command(argv, time.monotonic() - started)

    def start_soon(self) -> None:
        start_soon()

    def spawn(self, argv: Sequence[str], env: Mapping[str, str], stdin: bytes,
              seconds: float) -> Finished:
        """Run argv in its own session (so its own process group): on timeout (Unanswered),
        or when we are interrupted (SIGTERM's SystemExit), the whole group is killed, and
        whatever it started with it. A runaway chain (a plugin that runs itself) cannot
        outlive us. OSError if it cannot start."""
        import subprocess

        with subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=dict(env),
                              start_new_session=True) as proc:
            try:
                out, err = proc.communicate(stdin, timeout=seconds)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                raise Unanswered(f"{argv[0]} did not answer in {seconds:g}s; its process "
                                 "group was killed") from None
            except BaseException:  # SIGTERM (SystemExit) mid-call: no wait for it, roll back
                _kill_group(proc)
                raise
            return Finished(proc.returncode, out, err)


def _kill_group(proc: Any) -> None:
    """SIGKILL a spawned program's process group. Its leader is our child and not yet reaped
    (communicate did not return), so the group id is still ours: nothing else can hold it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


_LOCAL = Node()


def local() -> Node:
    """This node (the entries hand it down; see plugin/request.py)."""
    return _LOCAL
