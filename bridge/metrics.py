"""The bridge's metrics (Prometheus text format) and health endpoints, served on BRIDGE_METRICS_PORT:
`/metrics`, `/healthz` (the process is alive) and `/readyz` (connected to PostgreSQL and Kafka; says leader or
standby). A few instruments written out by hand: the project needs nothing more (the API builds its labelled
families from them too)."""

import asyncio
import json
import logging
import math
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Protocol

log = logging.getLogger(__name__)


def _number(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


@dataclass
class Counter:
    name: str
    help: str
    value: float = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def render(self) -> str:
        return f"# HELP {self.name} {self.help}\n# TYPE {self.name} counter\n{self.name} {_number(self.value)}\n"


@dataclass
class Gauge:
    name: str
    help: str
    value: float = 0.0

    def set(self, value: float) -> None:
        self.value = value

    def render(self) -> str:
        return f"# HELP {self.name} {self.help}\n# TYPE {self.name} gauge\n{self.name} {_number(self.value)}\n"


@dataclass
class Histogram:
    name: str
    help: str
    buckets: Sequence[float]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    observations: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        """Counts the value in its own bucket only; render() makes the counts cumulative."""
        self.total += value
        self.observations += 1
        i = bisect_left(self.buckets, value)
        if i < len(self.counts):
            self.counts[i] += 1

    def render(self) -> str:
        return f"# HELP {self.name} {self.help}\n# TYPE {self.name} histogram\n" + self.samples()

    def samples(self, labels: str = "") -> str:
        """The sample lines; `labels` (`route="/x",method="GET"`) are put on each, for a family of histograms."""
        sep = "," if labels else ""
        lines = [
            f'{self.name}_bucket{{{labels}{sep}le="{_number(b)}"}} {c}'
            for b, c in zip(self.buckets, accumulate(self.counts), strict=True)
        ]
        braced = f"{{{labels}}}" if labels else ""
        lines += [
            f'{self.name}_bucket{{{labels}{sep}le="+Inf"}} {self.observations}',
            f"{self.name}_sum{braced} {_number(self.total)}",
            f"{self.name}_count{braced} {self.observations}",
        ]
        return "\n".join(lines) + "\n"


class BridgeMetrics:
    def __init__(self) -> None:
        self.published = Counter("warehouse_bridge_events_published_total", "Status changes published to Kafka.")
        self.backlog = Gauge("warehouse_bridge_outbox_backlog_events", "Status changes waiting in the outbox.")
        self.oldest_age = Gauge(
            "warehouse_bridge_outbox_oldest_age_seconds", "Age of the oldest unpublished status change (0: none)."
        )
        self.latency = Histogram(
            "warehouse_bridge_change_to_kafka_commit_seconds",
            "From a status change's operation time to the Kafka commit that published it.",
            (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
        )
        self.batch_size = Histogram(
            "warehouse_bridge_batch_events", "Events per Kafka transaction.", (1, 10, 50, 100, 250, 500, 1000, 5000)
        )
        self.leader = Gauge("warehouse_bridge_leader", "1 while this bridge is the leader, else 0.")
        self.notification_queue = Gauge(
            "warehouse_bridge_notification_queue_usage",
            "Fraction of PostgreSQL's NOTIFY queue in use (pg_notification_queue_usage).",
        )
        self.role = "starting"
        self.postgres_ok = False
        self.kafka_ok = False

    def render(self) -> str:
        instruments = (
            self.published, self.backlog, self.oldest_age, self.latency, self.batch_size, self.leader,
            self.notification_queue,
        )  # fmt: skip
        return "".join(i.render() for i in instruments)

    def readiness(self) -> tuple[bool, dict[str, object]]:
        ready = self.postgres_ok and self.kafka_ok and self.role in {"leader", "standby"}
        return ready, {"role": self.role, "postgres": self.postgres_ok, "kafka": self.kafka_ok}


class Exposed(Protocol):
    """What serve() shows: Prometheus text, and whether the process is ready (with details)."""

    def render(self) -> str: ...

    def readiness(self) -> tuple[bool, dict[str, object]]: ...


async def serve(metrics: Exposed, host: str, port: int) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass  # headers: not needed
            parts = request.decode("latin-1").split()
            path = parts[1].split("?")[0] if len(parts) >= 2 else ""
            if len(parts) < 2 or parts[0] not in ("GET", "HEAD"):
                status, body, ctype = "405 Method Not Allowed", "only GET\n", "text/plain"
            elif path == "/metrics":
                status, body, ctype = "200 OK", metrics.render(), "text/plain; version=0.0.4"
            elif path == "/healthz":
                status, body, ctype = "200 OK", "ok\n", "text/plain"
            elif path == "/readyz":
                ready, detail = metrics.readiness()
                status = "200 OK" if ready else "503 Service Unavailable"
                body, ctype = json.dumps(detail) + "\n", "application/json"
            else:
                status, body, ctype = "404 Not Found", "try /metrics, /healthz or /readyz\n", "text/plain"
            data = body.encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(data)}\r\n"
                f"Connection: close\r\n\r\n".encode()
                + (data if parts[:1] != ["HEAD"] else b"")
            )
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeDecodeError) as e:
            log.debug("metrics request dropped: %s", e)
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)
