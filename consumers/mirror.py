"""`python -m consumers.mirror`: keeps a copy of every pair's current status in the table `stock_status_mirror`,
from the topics alone: an example of a downstream service that starts from the current state (the bootstrap of
consumers/bootstrap.py) and then follows the changes, ordering and de-duplicating by seq.

At every start it bootstraps again: the state topic, then the events from the offsets noted before it. Each
write keeps a pair's row only when newer by seq, so applying a state or a change again changes nothing. A seq
that jumps (events lost on the topic) is logged and counted (`warehouse_mirror_gaps_total`). While PostgreSQL is
out of reach the batch is retried; SIGINT/SIGTERM stop it with exit 0. Ready (/readyz) once every state is
copied and it follows the events."""

import asyncio
import logging
import sys
from collections.abc import Sequence

import asyncpg
from aiokafka.errors import KafkaError
from prometheus_client import Counter
from pydantic import ValidationError

from bridge.events import PairState, StatusChanged
from common.retry import Backoff, StateLog, retry
from common.stopping import unless_stopped
from consumers.bootstrap import changes
from consumers.config import MirrorSettings
from consumers.runner import ConsumerMetrics, run
from db.errors import postgres_failed
from db.queries import queries

log = logging.getLogger("consumers.mirror")
CONNECT_TIMEOUT_S = 5.0


class MirrorMetrics(ConsumerMetrics):
    def __init__(self) -> None:
        super().__init__("mirror")
        self.states = Counter(
            "warehouse_mirror_states_total", "Pair states copied by the bootstrap.", registry=self.registry
        )
        self.gaps = Counter(
            "warehouse_mirror_gaps_total", "Events whose seq jumped past their pair's last + 1.", registry=self.registry
        )
        self.caught_up = False

    def readiness(self) -> tuple[bool, dict[str, object]]:
        return self.caught_up and self.kafka_ok, {"bootstrapped": self.caught_up, "kafka": self.kafka_ok}


def _rows(states: Sequence[PairState]) -> list[list[object]]:
    columns: list[list[object]] = [[] for _ in range(7)]
    for s in states:
        for column, value in zip(
            columns, (s.product_id, s.warehouse_id, s.status, s.seq, s.quantity, s.changed_at, s.event_id), strict=True
        ):
            column.append(value)
    return columns


class Copy:
    """The table, over one connection made again when lost."""

    def __init__(self, url: str, stop: asyncio.Event) -> None:
        self.url, self.stop = url, stop
        self.conn: asyncpg.Connection | None = None
        self.state = StateLog(log)

    async def write(self, states: Sequence[PairState]) -> None:
        def report(e: Exception, delay: float) -> None:
            self.state("PostgreSQL unavailable, retrying", f"{type(e).__name__}; every {delay:g} s", logging.WARNING)

        await retry(lambda: self._write(states), retriable=postgres_failed, backoff=Backoff(), stop=self.stop,
                    on_retry=report)  # fmt: skip
        if self.state.forget():
            log.info("PostgreSQL answers again")

    async def _write(self, states: Sequence[PairState]) -> None:
        try:
            if self.conn is None or self.conn.is_closed():
                self.conn = await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT_S)
            await self.conn.execute(queries("consumers")["mirror_upsert"], *_rows(states))
        except Exception:
            if self.conn is not None and not self.conn.is_closed():
                self.conn.terminate()
            self.conn = None
            raise

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()


async def mirror(settings: MirrorSettings, metrics: MirrorMetrics, stop: asyncio.Event) -> None:
    copy = Copy(settings.database_url, stop)

    def gap(event: StatusChanged, last: int) -> None:
        metrics.gaps.inc()
        log.warning("pair %s: seq %d after %d: %d changes missing from the topic",
                    event.key.decode(), event.seq, last, event.seq - last - 1)  # fmt: skip

    state = StateLog(log)

    def report(e: Exception, delay: float) -> None:
        metrics.kafka_answers(False)
        state("cannot bootstrap from Kafka", f"{type(e).__name__}: {e}; retrying every {delay:g} s", logging.WARNING)

    async def follow() -> None:
        async for batch in changes(settings.kafka_bootstrap_servers, settings.kafka_topic,
                                   settings.kafka_stock_status_topic, stop, gap, metrics.skipped.inc):  # fmt: skip
            metrics.kafka_answers(True)
            if batch.states:
                await copy.write(batch.states)
                metrics.states.inc(len(batch.states))
            if batch.changes:
                latest = {event.key: event for event in batch.changes}  # in order per pair: the last is the newest
                await copy.write([event.state_after() for event in latest.values()])
                metrics.handled.inc(len(batch.changes))
            if batch.caught_up and not metrics.caught_up:
                metrics.caught_up = True
                log.info("mirror: every pair's state copied; following the changes")

    try:
        await retry(lambda: unless_stopped(follow(), stop), retriable=lambda e: isinstance(e, KafkaError | LookupError),
                    backoff=Backoff(first=1.0, cap=5.0), stop=stop, on_retry=report)  # fmt: skip
    finally:
        await copy.close()


def main() -> int:
    try:
        settings = MirrorSettings()
    except ValidationError as e:
        print(f"consumers.mirror: invalid settings:\n{e}", file=sys.stderr)  # noqa: T201
        return 2
    metrics = MirrorMetrics()
    return run("consumers.mirror", settings, metrics, lambda stop: mirror(settings, metrics, stop))


if __name__ == "__main__":
    sys.exit(main())
