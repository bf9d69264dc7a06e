"""Prometheus metrics (prometheus-client), on a registry of the service's own."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.scim_requests = Counter(
            "ziti_scim_scim_requests_total",
            "SCIM requests by source, operation and HTTP status",
            ["source", "operation", "status"],
            registry=self.registry,
        )
        self.reconcile_outcomes = Counter(
            "ziti_scim_reconcile_outcomes_total",
            "Reconcile outcomes by source and outcome",
            ["source", "outcome"],
            registry=self.registry,
        )
        self.controller_actions = Counter(
            "ziti_scim_controller_actions_total",
            "Identity changes made on the controller, by action",
            ["action"],
            registry=self.registry,
        )
        self.controller_latency = Histogram(
            "ziti_scim_controller_request_seconds",
            "Latency of controller API calls by method, path template and status",
            ["method", "path", "status"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.pending = Gauge(
            "ziti_scim_pending_users", "Users waiting to be converged", registry=self.registry
        )
        self.since_full_sync = Gauge(
            "ziti_scim_seconds_since_last_full_sync",
            "Seconds since the last successful full sync (-1 if never)",
            registry=self.registry,
        )
        self.brake = Gauge(
            "ziti_scim_brake_engaged",
            "Sources whose mass-deprovision brake holds destructive actions",
            registry=self.registry,
        )
        self.skipped = Gauge(
            "ziti_scim_skipped_users",
            "Users stored but not provisioned: a value their identity needs is missing (provisioningState"
            "=skipped, lastError names it)",
            ["source"],
            registry=self.registry,
        )
        self.paused = Gauge("ziti_scim_paused", "1 while provisioning is paused", registry=self.registry)
        self.rate_limited = Counter(
            "ziti_scim_rate_limited_total",
            "Requests refused with 429, by source",
            ["source"],
            registry=self.registry,
        )

    def controller_call(self, method: str, path: str, status: int | None, seconds: float) -> None:
        self.controller_latency.labels(method, path, str(status) if status is not None else "error").observe(
            seconds
        )

    async def render(self, refresh: Callable[[], Awaitable[None]] | None = None) -> bytes:
        if refresh is not None:
            await refresh()
        return generate_latest(self.registry)


def seconds_since(timestamp: float | None) -> float:
    return -1.0 if timestamp is None else max(0.0, time.time() - timestamp)
