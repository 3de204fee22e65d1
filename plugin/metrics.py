"""The daemon's Prometheus metrics (policy `metricsPort`, off by default).

Requests and reconcile passes run in forked children; each reports one JSON line to the
parent over a pipe, and the parent alone owns the registry. Attachments held and orphaned
records are read from the state dir at scrape time, so they are never stale. Imported only
by the daemon, and only when metrics are on: the shim and the in-process path never pay for
prometheus_client.
"""

from __future__ import annotations

import socket
import sys
import types
from collections.abc import Iterator, Mapping
from typing import Any

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _without_tls() -> None:
    """prometheus_client imports ssl for its TLS options, which we never use; the frozen
    bundle ships no _ssl. A stand-in whose every attribute is an inert placeholder."""
    try:
        import ssl  # noqa: F401
    except ImportError:
        stand_in = types.ModuleType("ssl")

        class _NoTls:
            def __init__(self, *_: object, **__: object) -> None:
                raise RuntimeError("TLS is not available in this bundle")

        stand_in.__getattr__ = lambda _name: _NoTls  # type: ignore[method-assign]
        sys.modules["ssl"] = stand_in


class _Store:
    """Collector: attachments held and orphaned records, read from the state dir. A scrape
    only looks (a read-only store: nothing set aside); a state dir it cannot read (a newer
    release's layout, a planted symlink) leaves these two gauges out of that scrape and is
    logged, never raised into the HTTP server (no answer, a traceback in the log)."""

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        from plugin import log
        from plugin.errors import CniError
        from plugin.state import StateStore

        try:
            records = StateStore(self.state_dir, read_only=True).records()
        except CniError as e:
            log.warn(f"metrics: cannot read the state dir: {e.msg}")
            return
        yield GaugeMetricFamily("amd_host_device_attachments",
                                "Attachments recorded on this node (NICs held by pods)",
                                value=len(records))
        yield GaugeMetricFamily("amd_host_device_orphaned_records",
                                "Records whose NIC has not come home yet, kept for reconcile",
                                value=sum(1 for r in records if r.orphaned_since))


class Metrics:
    def __init__(self, state_dir: str) -> None:
        _without_tls()
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.operations = Counter("amd_host_device_operations",
                                  "CNI operations served by the daemon, by command and result "
                                  "(ok, the CNI error code, or killed)",
                                  ["command", "result"], registry=self.registry)
        self.latency = Histogram("amd_host_device_operation_seconds",
                                 "Time a forked child spent on one CNI operation", ["command"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.released = Counter("amd_host_device_reconcile_released",
                                "Attachments reconcile released (NIC restored, or its record "
                                "expired after the maximum orphan age)", registry=self.registry)
        self.reconcile_errors = Counter("amd_host_device_reconcile_errors",
                                        "Attachments a reconcile pass could not release",
                                        registry=self.registry)
        self.registry.register(_Store(state_dir))

    def feed(self, event: Mapping[str, Any]) -> None:
        """One child's report; anything malformed is ignored (the children are ours)."""
        op = event.get("op")
        if op == "RECONCILE":
            self.released.inc(max(0, int(event.get("released", 0))))
            self.reconcile_errors.inc(max(0, int(event.get("errors", 0))))
        elif isinstance(op, str) and op:
            self.operations.labels(op, str(event.get("result", ""))).inc()
            self.latency.labels(op).observe(float(event.get("seconds", 0.0)))


# The scrape endpoint is for Prometheus on the node, not for every pod on the node network:
# a few connections at a time, each dropped when idle or when its request has not arrived
# whole in time (one byte every few seconds is never idle), and its sockets closed in every
# forked child (close_in_child).
MAX_CONNECTIONS = 8
IDLE_SECONDS = 5.0
REQUEST_SECONDS = 10.0


def _deadline_reader(conn: socket.socket, seconds: float) -> Any:
    """A buffered reader of `conn` whose reads all end by `seconds` from now (TimeoutError,
    which the HTTP handler takes as "discard this connection"), none idle for IDLE_SECONDS."""
    import io
    import time

    deadline = time.monotonic() + seconds

    class Raw(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buf: Any) -> int:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"request not complete after {seconds:g} s")
            conn.settimeout(min(IDLE_SECONDS, left))
            return conn.recv_into(buf)

    return io.BufferedReader(Raw())


def _server_class() -> Any:
    import socketserver
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Handler(BaseHTTPRequestHandler):
        timeout = IDLE_SECONDS   # a socket timeout on every read: idle peers are dropped
        server: Any

        def setup(self) -> None:
            super().setup()
            self.rfile.close()
            self.rfile = _deadline_reader(self.connection, REQUEST_SECONDS)

        def do_GET(self) -> None:
            from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

            self.connection.settimeout(IDLE_SECONDS)  # the answer: writes, not the deadline
            if self.path.split("?", 1)[0] not in ("/", "/metrics"):
                self.send_error(404)
                return
            body = generate_latest(self.server.registry)
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass   # a scrape is not an event

    class Server(socketserver.ThreadingMixIn, HTTPServer):
        daemon_threads = True
        block_on_close = False
        request_queue_size = MAX_CONNECTIONS

        def __init__(self, address: tuple[str, int], registry: Any) -> None:
            import ipaddress

            if ipaddress.ip_address(address[0]).version == 6:
                self.address_family = socket.AF_INET6
            self.registry = registry
            self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
            self.open: set[Any] = set()
            super().__init__(address, Handler)

        def process_request(self, request: Any, client_address: Any) -> None:
            if not self.slots.acquire(blocking=False):
                self.shutdown_request(request)   # at the limit: closed at once, no thread
                return
            self.open.add(request)
            try:
                super().process_request(request, client_address)
            except BaseException:
                self.open.discard(request)
                self.slots.release()
                raise

        def process_request_thread(self, request: Any, client_address: Any) -> None:
            try:
                super().process_request_thread(request, client_address)
            finally:
                self.open.discard(request)
                self.slots.release()

        def sockets(self) -> list[Any]:
            """The listener and every open connection: what a forked child must close."""
            return [self.socket, *list(self.open)]

    return Server


_SERVER: Any = None


def serve(port: int, state_dir: str, address: str = "127.0.0.1") -> Metrics:
    """Serve /metrics on address:port from a thread of the daemon's parent."""
    import threading

    global _SERVER
    _without_tls()
    m = Metrics(state_dir)
    _SERVER = _server_class()((address, port), m.registry)
    threading.Thread(target=_SERVER.serve_forever, name="metrics", daemon=True).start()
    return m


def close_in_child() -> None:
    """In a forked child: close the metrics sockets it inherited (the listener, and any
    connection open at the fork); the thread that serves them stayed in the parent."""
    import contextlib

    global _SERVER
    if _SERVER is None:
        return
    for sock in _SERVER.sockets():
        with contextlib.suppress(OSError):
            sock.close()   # the child's copy only; the parent's stays open
    _SERVER = None
