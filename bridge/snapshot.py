"""`python -m bridge snapshot`: (re)writes every pair's current state from PostgreSQL into the current-state topic
— for a state topic that was lost or compacted away, or pairs that predate the bridge.

The command only asks: it records the request in `state_snapshots` and wakes the bridge. The leading bridge
writes it, a chunk of pairs per Kafka transaction between its batches, with nothing of its own in flight
(bridge/drain.py), so the snapshot never writes an older state over a newer one, and it is safe while writers
and the bridge run. A crash of the bridge resumes it from the last chunk written. The command follows the
progress on stderr until the bridge is done (`--no-wait`: returns at once); while no bridge leads, the request
waits for one.
"""

import asyncio
import sys
import time

import asyncpg

from bridge.config import BridgeSettings
from bridge.drain import CHANNEL
from db.queries import queries

PROGRESS_EVERY_S = 1.0
NO_LEADER_AFTER_S = 5.0


async def snapshot(settings: BridgeSettings, wait: bool = True) -> int:
    sql, tid = queries("bridge"), settings.bridge_transactional_id
    conn = await asyncpg.connect(settings.database_url)
    try:
        pairs = await conn.fetchval(sql["request_snapshot"], tid)
        await conn.execute("SELECT pg_notify($1, 'snapshot')", CHANNEL)
        say(f"snapshot of {pairs:,} pairs into {settings.kafka_stock_status_topic} requested of the bridge {tid}")
        if not wait:
            return 0
        started, warned = time.monotonic(), False
        while True:
            state = await conn.fetchrow(sql["snapshot_state"], tid)
            if state is None:
                raise RuntimeError("the snapshot request is gone (deleted by hand?)")
            if state["finished_at"] is not None:
                say(f"snapshot: wrote {state['written']:,} pairs in {state['took_s']:.1f} s")
                return 0
            share = f" ({100 * state['written'] / state['pairs']:.0f} %)" if state["pairs"] else ""
            say(f"snapshot: {state['written']:,} of {state['pairs']:,} pairs{share}")
            if (
                not warned
                and time.monotonic() - started > NO_LEADER_AFTER_S
                and not await conn.fetchval(sql["leader_present"], tid)
            ):
                warned = True
                say(f"no bridge leads {tid}: the snapshot waits for one (start `python -m bridge`)")
            await asyncio.sleep(PROGRESS_EVERY_S)
    finally:
        await conn.close()


def say(line: str) -> None:
    sys.stderr.write(line + "\n")
