"""The daemon's Prometheus metrics (policy `metricsPort`, off by default).

Requests and reconcile passes run in forked children; each reports one JSON line to the
parent over a pipe, and the parent alone owns the registry. Attachments held and orphaned
records are read from the state dir at scrape time, so they are never stale. Imported only
by the daemon, and only when metrics are on: the shim and the in-process path never pay for
prometheus_client.
"""

from __future__ import annotations

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
    """Collector: attachments held and orphaned records, read from the state dir."""

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        from plugin.state import StateStore

        records = StateStore(self.state_dir).records()
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


def serve(port: int, state_dir: str) -> Metrics:
    _without_tls()
    from prometheus_client import start_http_server

    m = Metrics(state_dir)
    start_http_server(port, registry=m.registry)
    return m
