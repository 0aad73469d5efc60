"""`python -m consumers.replay`: move a consumer group back on the topic, so it reads the events again.

    python -m consumers.replay --group warehouse-store --from earliest
    python -m consumers.replay --group warehouse-store --from 2026-11-27T08:00:00Z [--dry-run]

`--from` a time moves each partition to its first event published at or after it (events are published after
they occur, so every change that occurred since then is read again, and perhaps a few from just before). A
partition is never moved forward: one whose group offset is already there or before stays, so nothing unread is
skipped. The group's consumers must be stopped: Kafka refuses to move the offsets of a group with members. Both
example consumers are safe to replay: the store keeps each event once (by event_id), the logger prints it again.
Reads KAFKA_BOOTSTRAP_SERVERS and KAFKA_TOPIC."""

import argparse
import asyncio
import logging
import sys
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CommitFailedError, KafkaError
from pydantic import ValidationError

from common import logs
from common.settings import KafkaSettings

TIMEOUT_S = 30.0


class ReplayError(Exception):
    pass


def parse_start(text: str) -> datetime | None:
    """`earliest` → None; else an ISO 8601 time, UTC when it names no zone."""
    if text == "earliest":
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither `earliest` nor an ISO 8601 time such as 2026-11-27T08:00:00Z"
        ) from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if moment.timestamp() < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is before 1970: Kafka's record times start there")
    return moment


async def _partitions(bootstrap: str, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = sorted(p["partition"] for p in described["partitions"])
    if described["error_code"] or not partitions:
        raise ReplayError(f"topic {topic!r} does not exist at {bootstrap} (set KAFKA_TOPIC)")
    return partitions


async def replay(bootstrap: str, topic: str, group: str, start: datetime | None, dry_run: bool) -> list[str]:
    """Moves `group` back to `start` on every partition of `topic` (never forward); one line per partition."""
    try:
        return await asyncio.wait_for(_replay(bootstrap, topic, group, start, dry_run), TIMEOUT_S)
    except CommitFailedError as e:
        raise ReplayError(
            f"group {group!r} has running consumers: stop them first (Kafka does not move the offsets of a group "
            "with members; a consumer killed without a goodbye counts until its session times out, 10 s for the "
            "example consumers)"
        ) from e
    except KafkaError as e:
        raise ReplayError(f"Kafka at {bootstrap} refused or failed: {type(e).__name__}: {e}") from e
    except TimeoutError as e:
        raise ReplayError(f"Kafka at {bootstrap} did not answer within {TIMEOUT_S:g} s") from e


async def _replay(bootstrap: str, topic: str, group: str, start: datetime | None, dry_run: bool) -> list[str]:
    tps = [TopicPartition(topic, p) for p in await _partitions(bootstrap, topic)]
    # read_committed: the end of a partition is its last stable offset, never inside an open bridge transaction.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False, isolation_level="read_committed"
    )
    try:
        await consumer.start()
    except BaseException:
        await consumer.stop()
        raise
    try:
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        if start is None:
            wanted = await consumer.beginning_offsets(tps)
        else:
            found = await consumer.offsets_for_times({tp: int(start.timestamp() * 1000) for tp in tps})
            wanted = {tp: found[tp].offset if found[tp] is not None else end[tp] for tp in tps}
        targets, lines = {}, []
        for tp in tps:
            committed = await consumer.committed(tp)
            if committed is not None and committed <= wanted[tp]:  # moving it forward would skip unread events
                lines.append(
                    f"partition {tp.partition}: stays at {committed:,}, already there or before (end {end[tp]:,})"
                )
                continue
            targets[tp] = wanted[tp]
            now = "none" if committed is None else f"{committed:,}"
            lines.append(f"partition {tp.partition}: {now} → {wanted[tp]:,} (end {end[tp]:,})")
        if targets and not dry_run:
            await consumer.commit(targets)
        return lines
    finally:
        await consumer.stop()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m consumers.replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--group", required=True, help="the consumer group, e.g. warehouse-store")
    parser.add_argument(
        "--from", dest="start", required=True, type=parse_start, help="`earliest`, or an ISO 8601 time (UTC if no zone)"
    )
    parser.add_argument("--dry-run", action="store_true", help="show where each partition would go; move nothing")
    args = parser.parse_args()
    try:
        settings = KafkaSettings()
    except ValidationError as e:
        print(f"consumers.replay: invalid settings:\n{e}", file=sys.stderr)
        return 2
    logs.setup(settings.log_format, logging.WARNING)  # aiokafka's retries are kept quiet: errors are reported below
    try:
        lines = asyncio.run(
            replay(settings.kafka_bootstrap_servers, settings.kafka_topic, args.group, args.start, args.dry_run)
        )
    except ReplayError as e:
        print(f"consumers.replay: {e}", file=sys.stderr)
        return 1
    where = "the beginning" if args.start is None else args.start.isoformat()
    verb = "would move" if args.dry_run else "moved"
    print(f"group {args.group} on {settings.kafka_topic}: {verb} to {where}")
    for line in lines:
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
