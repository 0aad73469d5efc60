"""Prometheus metrics of the API: requests by route and status code, and their latency by route; and the outbox
as PostgreSQL holds it (what waits for the bridge, and since when), read by the API so that an alert knows it
while no bridge runs."""

import time
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.paths import template_of
from common.metrics import new_registry

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class RequestMetrics:
    """The API process's registry: its requests, and the library's process metrics."""

    def __init__(self) -> None:
        self.registry = new_registry()
        self.requests = Counter(
            "warehouse_api_requests_total",
            "HTTP requests answered, by route and status code.",
            ["method", "route", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "warehouse_api_request_duration_seconds",
            "Time to answer an HTTP request, by route.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.connections_cut = Counter(
            "warehouse_api_connections_cut_total",
            "Connections the server closed itself: `too_many` open, or a request's `headers` or `body` late.",
            ["reason"],
            registry=self.registry,
        )
        self.outbox_backlog = Gauge(
            "warehouse_outbox_backlog_events", "Status changes waiting in the outbox (read every 5 s).",
            registry=self.registry,
        )  # fmt: skip
        self.outbox_oldest_age = Gauge(
            "warehouse_outbox_oldest_age_seconds",
            "Age of the oldest status change waiting in the outbox, 0 when none (read every 5 s).",
            registry=self.registry,
        )
        # The labelled children, kept: looking one up by its labels costs more than counting in it.
        self._counted: dict[tuple[str, str, int], Any] = {}
        self._timed: dict[tuple[str, str], Any] = {}

    def cut(self, reason: str) -> None:
        self.connections_cut.labels(reason).inc()

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        counted = self._counted.get((method, route, status))
        if counted is None:
            counted = self._counted[method, route, status] = self.requests.labels(method, route, str(status))
        counted.inc()
        timed = self._timed.get((method, route))
        if timed is None:
            timed = self._timed[method, route] = self.latency.labels(method, route)
        timed.observe(seconds)


class MetricsMiddleware:
    """Counts every HTTP request under its route's path template (`/balances/product/{product_id}`), so label
    values stay few, also when a middleware answered before routing (a 401, a 413, a 503 while PostgreSQL is
    down); a path no route matches counts as `unmatched`."""

    def __init__(self, app: ASGIApp, metrics: RequestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route: Any = scope.get("route")
            path = getattr(route, "path", None) or template_of(scope["app"], scope["path"]) or "unmatched"
            method = scope["method"] if scope["method"] in _METHODS else "other"
            self.metrics.observe(method, path, status, time.perf_counter() - started)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
