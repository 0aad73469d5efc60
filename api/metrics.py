"""Prometheus metrics of the API: requests by route and status code, and their latency by route."""

import time
from collections import Counter as Tally
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridge.metrics import Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_REQUESTS = "warehouse_api_requests_total"
_LATENCY = "warehouse_api_request_duration_seconds"


class RequestMetrics:
    def __init__(self) -> None:
        self.requests: Tally[tuple[str, str, int]] = Tally()
        self.latency: dict[tuple[str, str], Histogram] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests[method, route, status] += 1
        histogram = self.latency.get((method, route))
        if histogram is None:
            histogram = self.latency[method, route] = Histogram(_LATENCY, "", LATENCY_BUCKETS)
        histogram.observe(seconds)

    def render(self) -> str:
        lines = [f"# HELP {_REQUESTS} HTTP requests answered, by route and status code.", f"# TYPE {_REQUESTS} counter"]
        lines += [
            f'{_REQUESTS}{{method="{m}",route="{r}",code="{c}"}} {n}' for (m, r, c), n in sorted(self.requests.items())
        ]
        text = "\n".join(lines) + "\n"
        text += f"# HELP {_LATENCY} Time to answer an HTTP request, by route.\n# TYPE {_LATENCY} histogram\n"
        for (m, r), histogram in sorted(self.latency.items()):
            text += histogram.samples(f'method="{m}",route="{r}"')
        return text


class MetricsMiddleware:
    """Counts every HTTP request under its route's path template (`/balances/product/{product_id}`), so label
    values stay few; a path no route matches counts as `unmatched`."""

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
            path = getattr(route, "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in _METHODS else "other"
            self.metrics.observe(method, path, status, time.perf_counter() - started)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
