"""The bridge's metrics and readiness, served on BRIDGE_METRICS_PORT by common.metrics: `/metrics`, `/healthz`
(the process is alive) and `/readyz` (connected to PostgreSQL and Kafka; says leader or standby)."""

import asyncpg
from prometheus_client import Counter, Gauge, Histogram

from common.metrics import new_registry
from db.queries import queries

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 5000)
BACKLOG_EVERY_S = 1.0  # the backlog query counts the whole outbox


class BridgeMetrics:
    def __init__(self) -> None:
        self.registry = r = new_registry()
        self.published = Counter(
            "warehouse_bridge_events_published_total", "Status changes published to Kafka.", registry=r
        )
        self.backlog = Gauge(
            "warehouse_bridge_outbox_backlog_events", "Status changes waiting in the outbox.", registry=r
        )
        self.oldest_age = Gauge(
            "warehouse_bridge_outbox_oldest_age_seconds",
            "Age of the oldest unpublished status change (0: none).",
            registry=r,
        )
        self.latency = Histogram(
            "warehouse_bridge_change_to_kafka_commit_seconds",
            "From a status change's operation time to the Kafka commit that published it.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "warehouse_bridge_batch_events", "Events per Kafka transaction.", buckets=BATCH_BUCKETS, registry=r
        )
        self.leader = Gauge("warehouse_bridge_leader", "1 while this bridge is the leader, else 0.", registry=r)
        self.notification_queue = Gauge(
            "warehouse_bridge_notification_queue_usage",
            "Fraction of PostgreSQL's NOTIFY queue in use (pg_notification_queue_usage).",
            registry=r,
        )
        self.events_published = 0  # the counter's value, for the log
        self.role = "starting"
        self.postgres_ok = False
        self.kafka_ok = False
        self._backlog_read_at = -BACKLOG_EVERY_S

    def committed(self, occurred: list[float], committed_at: float) -> None:
        """A batch committed at `committed_at`; `occurred`: its events' operation times (seconds since the epoch)."""
        self.published.inc(len(occurred))
        self.events_published += len(occurred)
        self.batch_size.observe(len(occurred))
        for at in occurred:
            self.latency.observe(committed_at - at)

    def set_role(self, role: str) -> None:
        self.role = role
        self.leader.set(1 if role == "leader" else 0)

    async def read_backlog(self, conn: asyncpg.Connection, now: float, every: float = BACKLOG_EVERY_S) -> None:
        """The outbox's backlog gauges, read at most once per `every` seconds (`now`: the loop's time)."""
        if now - self._backlog_read_at < every:
            return
        self._backlog_read_at = now
        row = await conn.fetchrow(queries("bridge")["backlog"])
        assert row is not None  # an aggregate without GROUP BY returns one row
        self.backlog.set(row["events"])
        self.oldest_age.set(row["oldest_age_s"])
        self.notification_queue.set(row["queue_usage"])

    def readiness(self) -> tuple[bool, dict[str, object]]:
        ready = self.postgres_ok and self.kafka_ok and self.role in {"leader", "standby"}
        return ready, {"role": self.role, "postgres": self.postgres_ok, "kafka": self.kafka_ok}
