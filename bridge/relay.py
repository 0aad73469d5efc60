"""Outbox → Kafka, exactly once for read_committed consumers: the life of a bridge, in the order it goes.

  1. leadership (bridge/leadership.py): stand by until this bridge holds the leadership lock;
  2. fencing (bridge/sending.py): start the transactional producer, which fences any older producer with the
     same transactional id, so a stale leader can no longer commit;
  3. recovery (bridge/recovery.py): delete the outbox rows that the last committed batch named (published just
     before a crash, not yet deleted);
  4. the drain (bridge/drain.py): in one Kafka transaction per batch, send the oldest outbox rows' events and a
     state record naming their ids; commit; delete the rows. A crash before the commit aborts the transaction
     (the next leader's producer start aborts it) and the rows are sent again; a crash after it leaves rows that
     step 3 deletes. Either way each event is on the topic once, in outbox id order, which per pair is commit
     order.
Any failure of PostgreSQL or Kafka tears the leader down; it starts over from step 1 after a capped backoff
(common/retry.py), logging once per change of state.
"""

import asyncio
import logging
from collections.abc import Awaitable

import asyncpg
from aiokafka.errors import KafkaError, ProducerFenced

from bridge.config import BridgeSettings
from bridge.drain import Drain
from bridge.errors import BridgeError
from bridge.leadership import connect_control, lead_when_free
from bridge.metrics import BridgeMetrics
from bridge.recovery import recover
from bridge.sending import Publisher
from bridge.topics import ensure_topics
from common.retry import Backoff, StateLog, retry
from common.stopping import Stopped
from db.errors import postgres_failed

log = logging.getLogger(__name__)
CLOSE_TIMEOUT_S = 1.0


def retriable(e: Exception) -> bool:
    """PostgreSQL out of reach or refusing the bridge's work (a migration missing, say), Kafka out of reach or
    fenced, a bridge error that says so: start over after a backoff."""
    return postgres_failed(e) or isinstance(e, KafkaError) or (isinstance(e, BridgeError) and e.retriable)


class Relay:
    def __init__(self, settings: BridgeSettings, stop: asyncio.Event, metrics: BridgeMetrics) -> None:
        self.settings = settings
        self.stop = stop
        self.metrics = metrics
        self.state = StateLog(log)
        self.backoff = Backoff(first=0.5, cap=5.0)

    async def run(self) -> None:
        """Lead or stand by until `stop` is set; start over after any retriable failure."""
        try:
            await retry(self._lead, retriable=retriable, backoff=self.backoff, stop=self.stop, on_retry=self._report)
        except Stopped:
            pass

    def _report(self, e: Exception, delay: float) -> None:
        if postgres_failed(e):
            self.metrics.postgres_ok = False
            self.state("PostgreSQL unavailable, retrying", f"{type(e).__name__}: {e}", logging.WARNING)
        elif isinstance(e, ProducerFenced):
            self.state("fenced: a newer bridge with the same transactional id took over", level=logging.WARNING)
        elif isinstance(e, KafkaError):
            self.metrics.kafka_ok = False
            self.state("Kafka unavailable, retrying", f"{type(e).__name__}: {e}", logging.WARNING)
        else:
            self.state("starting over", str(e), logging.WARNING)

    async def _lead(self) -> None:
        s, published_before = self.settings, self.metrics.events_published
        try:
            control = await connect_control(s)
            self.metrics.postgres_ok = True
            try:
                await ensure_topics(s)
                self.metrics.kafka_ok = True
                if not await lead_when_free(control, s, self.stop, self.metrics, self.state):
                    return
                work = await asyncpg.connect(s.database_url)
                publisher = Publisher(s, self.metrics, self.state)
                try:
                    await publisher.start()
                    await recover(work, s)
                    self.state("leader", f"publishing to {s.kafka_topic}")
                    self.metrics.set_role("leader")
                    await Drain(s, self.stop, self.metrics, publisher, control, work).run()
                finally:
                    await close_quietly(publisher.stop(), "the Kafka producer")
                    await close_quietly(work.close(timeout=CLOSE_TIMEOUT_S), "the PostgreSQL connection")
            finally:
                await close_quietly(control.close(timeout=CLOSE_TIMEOUT_S), "the PostgreSQL control connection")
        finally:
            self.metrics.set_role("starting")
            if self.metrics.events_published > published_before:  # it worked for a while: start gently again
                self.backoff.reset()


async def close_quietly(closing: Awaitable[None], what: str) -> None:
    """Teardown after a failure: closing what failed may fail or hang too, and must not hide the first error."""
    try:
        await asyncio.wait_for(closing, CLOSE_TIMEOUT_S)
    except Exception as e:
        log.debug("closing %s: %s: %s", what, type(e).__name__, e)
