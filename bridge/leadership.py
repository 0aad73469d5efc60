"""Leadership: one bridge publishes, the one whose control connection holds the leadership advisory lock (one
lock per BRIDGE_TRANSACTIONAL_ID); the others wait as standbys and try again every second. PostgreSQL frees the
lock when the leader's session ends: at once when its process dies, within about 15 s when its host or network is
lost (the keepalives below)."""

import asyncio

import asyncpg

from bridge.config import BridgeSettings
from bridge.metrics import BridgeMetrics
from bridge.topics import ensure_topics
from common.retry import StateLog
from common.stopping import pause
from db.queries import queries

STANDBY_RETRY_S = 1.0
STANDBY_KAFKA_CHECK_S = 10.0  # a standby is ready only while it can reach Kafka too
# Server side, on the leader's control connection: probes after 5 s idle, every 2 s, 3 missed → the session ends;
# unacknowledged data for 10 s → the session ends.
LEADER_KEEPALIVES = {
    "tcp_keepalives_idle": "5",
    "tcp_keepalives_interval": "2",
    "tcp_keepalives_count": "3",
    "tcp_user_timeout": "10000",
}


async def connect_control(settings: BridgeSettings) -> asyncpg.Connection:
    """The control connection: it holds the leadership lock, and listens for wake-ups."""
    # lock_timeout: taking "listening" gives up server-side, so a lock granted as a client timeout fired is never
    # left held.
    return await asyncpg.connect(
        settings.database_url,
        server_settings={"lock_timeout": f"{int(settings.bridge_poll_interval * 1000)}ms", **LEADER_KEEPALIVES},
    )


async def lead_when_free(
    control: asyncpg.Connection, settings: BridgeSettings, stop: asyncio.Event, metrics: BridgeMetrics, state: StateLog
) -> bool:
    """Stands by until this bridge takes the leadership: True; False if stopped first."""
    loop = asyncio.get_running_loop()
    checked_kafka_at = loop.time()
    while not await control.fetchval(queries("bridge")["take_leadership"], settings.bridge_transactional_id):
        state("standby", f"another bridge leads {settings.bridge_transactional_id}")
        metrics.set_role("standby")
        await metrics.read_backlog(control, loop.time(), every=0)
        if await pause(stop, STANDBY_RETRY_S):
            return False
        if loop.time() - checked_kafka_at > STANDBY_KAFKA_CHECK_S:
            await ensure_topics(settings)
            metrics.kafka_ok = True
            checked_kafka_at = loop.time()
    return True
