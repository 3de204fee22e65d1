"""`amd-host-device daemon`: the resident half of thick mode, and the reconcile loop.

Why: a Python process per CNI call pays the interpreter, our imports and `sh` every time. The
daemon pays them once; each request is served in a forked child of the warm process, so
per-request state (log context, caches, a crash) stays as isolated as a fresh process, and the
child runs `plugin.request.answer`, exactly what the in-process path runs.

- Socket: node policy's `socket` (env AMD_HOST_DEVICE_SOCKET), 0600 in a 0700 dir; every peer
  must be uid 0 (SO_PEERCRED): the runtime is root, and so is anyone who could run us.
- The child's request (plugin/request.py) has the forwarded CNI_* and AMD_HOST_DEVICE_* env
  over the daemon's own (whose os.environ is never changed), and stdin; its log lines go to
  the daemon's stderr as they are written (the container log, as with Multus thick); its
  reply goes back over the socket.
- If the shim goes away mid-request (the runtime's timeout kill), the child gets SIGTERM, as
  the in-process plugin would, and rolls back.
- Reconcile passes run in forked children too, so this process stays single-threaded (bar
  the metrics server, when enabled) and never forks while one of its own threads holds a lock
  a child would need.
- SIGTERM/SIGINT: remove the socket file, stop accepting, let in-flight children finish for
  up to --grace seconds, then SIGTERM them (they roll back), then exit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import selectors
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from plugin import log, shim
from plugin.errors import exit_on_signal

# Requests that run ip/ethtool: their child starts its command shell at once (plugin/node.py).
_RUNS_COMMANDS = ("ADD", "DEL", "CHECK", "GC")
CHILD_READ_SECONDS = 10.0   # a peer's whole request (all frames, and its "G"), not per recv
_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def peer_uid(conn: socket.socket) -> int:
    _pid, uid, _gid = _CRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                   _CRED.size))
    return int(uid)


class _Request(socketserver.BaseRequestHandler):
    """Runs in the forked child, for one connection."""

    server: _Server

    def handle(self) -> None:
        self.server.become_child()
        conn: socket.socket = self.request
        # One deadline for everything the peer sends before the request runs: a peer that
        # dribbles a byte at a time must not hold this child (and a max_children slot) longer.
        deadline = time.monotonic() + CHILD_READ_SECONDS
        try:
            op, _, version = shim.recv_frame(conn, deadline).partition(b" ")
            env_data = shim.recv_frame(conn, deadline)
            stdin = shim.recv_frame(conn, deadline)
        except (OSError, shim.Lost):
            return
        if version != shim.WIRE_VERSION:
            return   # another wire version (mid-upgrade): the shim runs it in process
        if op == shim.PING:
            shim.send_frame(conn, shim.PONG + b" " + str(os.getppid()).encode())
            return
        env = shim.decode_env(env_data) if op == shim.CNI else None
        if env is None:
            return   # not our protocol: the shim falls back, nothing ran
        try:
            conn.settimeout(max(deadline - time.monotonic(), 0.001))
            conn.sendall(shim.ACCEPTED)
            if conn.recv(1) != shim.GO:
                return
        except OSError:
            return
        self._run(conn, env, stdin)

    def _run(self, conn: socket.socket, env: dict[str, str], stdin: bytes) -> None:
        from plugin import request, settings

        conn.settimeout(None)
        os.dup2(2, 1)   # nothing may write on the daemon's stdout but its log
        req = request.Request(request_env(os.environ, env), stdin)
        log.bind(cmd=req.command)
        if req.command in _RUNS_COMMANDS:
            from plugin import node

            # Its tools are the request's (AMD_HOST_DEVICE_TOOLS): request.answer installs
            # the same settings again.
            settings.use(settings.Settings(req.env))
            node.local().start_soon()
        done = threading.Event()
        threading.Thread(target=_watch_peer, args=(conn, done), daemon=True).start()
        started = time.monotonic()
        try:
            reply = request.answer(req)
        except SystemExit as e:   # SIGTERM: rolled back, like the in-process plugin
            reply = request.Reply(e.code if isinstance(e.code, int) else 1, b"")
        done.set()
        with contextlib.suppress(OSError):
            shim.send_frame(conn, str(reply.code).encode())
            shim.send_frame(conn, reply.stdout)
        self.server.report({"op": req.command, "code": reply.code,
                            "result": _result(reply.code, reply.stdout),
                            "seconds": time.monotonic() - started})


def request_env(own: Mapping[str, str], forwarded: Mapping[str, str]) -> dict[str, str]:
    """The request's environment: the daemon's own without its CNI_* and AMD_HOST_DEVICE_*
    variables, and the shim's (which are only those) over it."""
    env = {k: v for k, v in own.items() if not k.startswith(shim.FORWARDED_PREFIXES)}
    env.update(forwarded)
    return env


def _result(code: int, stdout: bytes) -> str:
    if code == 0:
        return "ok"
    with contextlib.suppress(ValueError, AttributeError):
        reply = json.loads(stdout) if stdout else None
        if isinstance(reply, dict) and isinstance(reply.get("code"), int):
            return str(reply["code"])
    return "killed"


def _watch_peer(conn: socket.socket, done: threading.Event) -> None:
    """The shim gone before the answer (the runtime killed it): SIGTERM ourselves."""
    with contextlib.suppress(OSError):
        conn.recv(1)
    if not done.is_set():
        os.kill(os.getpid(), signal.SIGTERM)


class _Server(socketserver.ForkingMixIn, socketserver.UnixStreamServer):
    # At max_children a new connection is closed at once (its shim has no "A": it runs the
    # request in process) rather than waited on: the parent never blocks on its children, so
    # pings, SIGTERM and the reconcile loop go on however many peers are slow. 64 children
    # are well within the pod's memory limit; a node has far fewer NICs than that.
    max_children = 64
    request_queue_size = 128
    block_on_close = False
    saturated = False

    def collect_children(self, *, blocking: bool = False) -> None:
        """Reap the request children that have ended, never waiting (the stdlib's waits for
        one at max_children, and its waitpid(-1) could reap the reconcile child too)."""
        kids = self.active_children
        for pid in list(kids or ()):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done and kids is not None:
                kids.discard(pid)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.collect_children()
        if len(self.active_children or ()) >= self.max_children:
            if not self.saturated:   # one line per episode, not one per connection
                log.event(f"{self.max_children} requests in flight: closed a new connection (its "
                     "caller runs the request in process), and so until one ends")
            self.saturated = True
            self.shutdown_request(request)
            return
        self.saturated = False
        if self.hand_to_spare(request):
            self.close_request(request)
        else:
            super().process_request(request, client_address)

    def __init__(self, path: str, report_fd: int) -> None:
        self.report_fd = report_fd
        self.spare: tuple[int, socket.socket] | None = None   # (pid, our end of its pair)
        super().__init__(path, _Request, bind_and_activate=False)

    def become_child(self) -> None:
        """What a forked request child (or the spare) drops or changes of the parent's."""
        self.socket.close()          # the child must not keep the listener alive
        _close_metrics()             # nor the metrics server's sockets
        self.drop_spare_end()        # nor the spare's pair: its EOF says the parent is gone
        signal.set_wakeup_fd(-1)     # the parent's: its signals are not ours
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, exit_on_signal)

    def drop_spare_end(self) -> None:
        if self.spare is not None:
            self.spare[1].close()
            self.spare = None

    def make_spare(self) -> None:
        """Fork the next request's child ahead of its request, with its command shell started
        (plugin/node.py): neither the fork nor the shell is then paid while a caller waits.
        The loop makes one while no request runs, so it takes no CPU from one either.
        It waits for one connection from us over a socketpair (SCM_RIGHTS), serves it, exits;
        an EOF instead (we stopped or died) ends it."""
        if self.spare is not None or len(self.active_children or ()) >= self.max_children:
            return
        ours, theirs = socket.socketpair()
        pid = os.fork()
        if pid:
            theirs.close()
            self.spare = (pid, ours)
            return
        status = 1
        try:
            ours.close()
            self.become_child()
            from plugin import node

            node.local().start_soon()
            _, fds, _, _ = socket.recv_fds(theirs, 1, 1)
            theirs.close()
            if fds:
                conn = socket.socket(fileno=fds[0])
                try:
                    self.finish_request(conn, "")
                finally:
                    self.shutdown_request(conn)
            status = 0
        finally:
            os._exit(status)

    def hand_to_spare(self, request: socket.socket) -> bool:
        """Give the connection to the spare; False if there is none or it is gone."""
        if self.spare is None:
            return False
        pid, ours = self.spare
        self.spare = None
        if self.active_children is None:
            self.active_children = set()
        self.active_children.add(pid)   # serving, or dead: reaped with the request children
        try:
            socket.send_fds(ours, [b"R"], [request.fileno()])
        except OSError:
            return False
        finally:
            ours.close()
        return True

    def reap_spare(self) -> None:
        """An idle spare that died (killed): reaped, and replaced by make_spare."""
        if self.spare is not None:
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(self.spare[0], os.WNOHANG)[0] == 0:
                    return
            self.drop_spare_end()

    def end_spare(self) -> None:
        """Stopping: the idle spare reads EOF and exits (SIGKILL if it has not in 2 s);
        reaped here."""
        if self.spare is None:
            return
        pid = self.spare[0]
        self.drop_spare_end()
        deadline = time.monotonic() + 2.0
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(pid, os.WNOHANG)[0] == 0:
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    return
                time.sleep(0.01)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        try:
            uid = peer_uid(request)
        except OSError:
            return False
        if uid != 0:
            log.event(f"refused a connection from uid {uid}: only root may call the plugin")
            return False
        return True

    def report(self, event: dict[str, Any]) -> None:
        """One line to the parent's metrics (one write below PIPE_BUF: atomic)."""
        if self.report_fd >= 0:
            with contextlib.suppress(OSError):
                os.write(self.report_fd, json.dumps(event).encode() + b"\n")


def warm_up() -> None:
    """What every request would otherwise import: our modules, sh, tenacity."""
    from plugin.imports import load_dataclasses, load_sh

    load_dataclasses()
    from plugin import reconcile, request  # noqa: F401

    request.preload()

    load_sh()
    import tenacity  # noqa: F401


def _close_metrics() -> None:
    """In a forked child: the metrics listener and connections are the parent's."""
    metrics = sys.modules.get("plugin.metrics")
    if metrics is not None:
        metrics.close_in_child()


def _listen(path: str, report_fd: int) -> _Server:
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)
    from plugin import daemon_client

    if os.path.exists(path):
        if daemon_client.ping(path):
            raise SystemExit(f"another daemon serves {path}")
        os.unlink(path)   # stale: its daemon is gone
    server = _Server(path, report_fd)
    old = os.umask(0o177)
    try:
        server.server_bind()
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    server.server_activate()
    return server


class Daemon:
    def __init__(self, args: argparse.Namespace) -> None:
        from plugin import policy

        self.args = args
        self.policy = policy.load(os.environ)
        self.stopping = False
        self.reconciler: int | None = None
        self.next_reconcile = time.monotonic()
        self.metrics: Any = None
        self.report_r, report_w = -1, -1
        if self.policy.metrics_port:
            from plugin import metrics

            try:
                self.metrics = metrics.serve(self.policy.metrics_port, self.policy.state_dir,
                                             self.policy.metrics_address)
            except OSError as e:   # serving requests matters more than counting them
                log.event(f"no metrics: cannot serve {self.policy.metrics_address} port "
                     f"{self.policy.metrics_port}: {e}")
            else:
                self.report_r, report_w = os.pipe()
                os.set_blocking(self.report_r, False)
        self.server = _listen(self.policy.socket, report_w)
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        # A child's end wakes the loop (through the wakeup fd), to make the next spare.
        signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)

    def _stop(self, signum: int, _frame: object) -> None:
        self.stopping = True

    def _children(self) -> set[int]:
        kids = set(self.server.active_children or ())
        if self.reconciler is not None:
            kids.add(self.reconciler)
        return kids

    def _reap(self) -> None:
        self.server.collect_children()
        self.server.reap_spare()
        # Only while no request runs: the fork and its shell would take CPU from it.
        if not self.stopping and not self.server.active_children:
            self.server.make_spare()
        if self.reconciler is not None:
            with contextlib.suppress(ChildProcessError):
                pid, _ = os.waitpid(self.reconciler, os.WNOHANG)
                if pid == 0:
                    return
            self.reconciler = None

    def _drain_reports(self) -> None:
        if self.report_r < 0:
            return
        chunks = b""
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(self.report_r, 65536):
                chunks += chunk
        for line in chunks.splitlines():
            with contextlib.suppress(ValueError):
                self.metrics.feed(json.loads(line))

    def _maybe_reconcile(self) -> None:
        if self.args.reconcile_interval <= 0 or self.reconciler is not None:
            return
        if time.monotonic() < self.next_reconcile:
            return
        self.next_reconcile = time.monotonic() + self.args.reconcile_interval
        pid = os.fork()
        if pid:
            self.reconciler = pid
            return
        code = 1
        try:
            code = self._reconcile_child()
        finally:
            os._exit(code)

    def _reconcile_child(self) -> int:
        self.server.socket.close()
        _close_metrics()
        self.server.drop_spare_end()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        from plugin import node, reconcile
        from plugin.state import StateStore

        log.bind(cmd="RECONCILE")
        store = StateStore(self.policy.state_dir)
        released = 0
        try:  # a state dir a newer release laid out (formats.Newer) fails the pass, like others
            before = len(store.records())
            errors = reconcile.reconcile_once(node.local(), self.policy.state_dir, self.args.cni_path,
                                            self.args.max_orphan_hours * 3600)
            released = before - len(store.records())
        except Exception as e:   # the loop goes on; the next pass may succeed
            log.error(f"reconcile pass failed: {e}")
            errors = [str(e)]
        self.server.report({"op": "RECONCILE", "released": released, "errors": len(errors)})
        sys.stderr.flush()
        return 1 if errors else 0

    def serve(self) -> int:
        sel = selectors.DefaultSelector()
        sel.register(self.server.socket, selectors.EVENT_READ, "accept")
        sel.register(self.wake_r, selectors.EVENT_READ, "wake")
        if self.report_r >= 0:
            sel.register(self.report_r, selectors.EVENT_READ, "report")
        self.server.timeout = 0
        self.server.make_spare()
        log.event(f"serving {self.policy.socket} (pid {os.getpid()})")
        while not self.stopping:
            self._maybe_reconcile()
            # Without reconcile passes next_reconcile never moves: wait(0) would spin.
            wait = max(0.0, min(1.0, self.next_reconcile - time.monotonic())) \
                if self.args.reconcile_interval > 0 else 1.0
            for key, _ in sel.select(wait):
                if key.data == "accept":
                    self.server.handle_request()
                elif key.data == "wake":
                    with contextlib.suppress(BlockingIOError):
                        os.read(self.wake_r, 512)
            self._drain_reports()
            self._reap()
        return self._shutdown(sel)

    def _shutdown(self, sel: selectors.BaseSelector) -> int:
        # New callers find no socket and run in process; connections not yet accepted are
        # reset, and their shims (no "A" yet) run in process too.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.policy.socket)
        sel.unregister(self.server.socket)
        self.server.socket.close()
        self.server.end_spare()
        log.event(f"stopping: {len(self._children())} requests in flight, waiting up to "
             f"{self.args.grace:g} s")
        deadline = time.monotonic() + self.args.grace
        for sig in (signal.SIGTERM, signal.SIGKILL):
            while self._children() and time.monotonic() < deadline:
                sel.select(0.05)
                self._drain_reports()
                self._reap()
            if not self._children():
                break
            log.event(f"{len(self._children())} requests still in flight: sending {sig.name}")
            for pid in self._children():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + 5.0
        self._reap()
        log.event("stopped")
        return 0


def main(argv: Sequence[str]) -> int:
    from plugin.delete import MAX_ORPHAN_SECONDS

    p = argparse.ArgumentParser(prog="amd-host-device daemon",
                                description="Serve CNI requests from the shim over a unix "
                                            "socket, and run the reconcile loop.")
    p.add_argument("--cni-path", default=os.environ.get("CNI_PATH", "/opt/cni/bin"),
                   help="where host-device is, for reconcile (colon list)")
    p.add_argument("--reconcile-interval", type=float, default=60.0,
                   help="seconds between reconcile passes; 0 = no reconcile")
    p.add_argument("--max-orphan-hours", type=float, default=MAX_ORPHAN_SECONDS / 3600)
    p.add_argument("--grace", type=float, default=20.0,
                   help="seconds in-flight requests get to finish on SIGTERM")
    p.add_argument("--ping", action="store_true",
                   help="exit 0 if the daemon answers on its socket (readiness probe)")
    args = p.parse_args(argv)
    args.cni_path = [d for d in args.cni_path.split(":") if d]
    if args.ping:
        from plugin import daemon_client, policy

        return 0 if daemon_client.ping(policy.load(os.environ).socket) else 1
    warm_up()
    log.bind(cmd="DAEMON")   # a request child binds its own command over it
    return Daemon(args).serve()
