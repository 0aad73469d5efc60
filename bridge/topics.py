"""The bridge's three topics (events, current state, the bridge's own state): created when missing, refused when
they exist with settings that would lose events or break the co-partitioning of events and states."""

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from bridge.config import BridgeSettings
from bridge.errors import BridgeError

log = logging.getLogger(__name__)

TOPIC_ALREADY_EXISTS = 36


class IncompatibleTopic(BridgeError):
    """A topic exists with settings the bridge cannot work with; it refuses to start rather than lose events."""

    retriable = False


async def ensure_topics(settings: BridgeSettings) -> None:
    """The topics exist, with the settings the bridge needs (raises IncompatibleTopic otherwise)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        await ensure_event_topics(admin, settings.kafka_topic, settings.kafka_stock_status_topic,
                                  settings.bridge_topic_partitions)  # fmt: skip
        # The state topic is read for its last record per transactional id: compaction keeps exactly that.
        await ensure_topic(admin, settings.bridge_state_topic, 1, "compact")
    finally:
        await admin.close()


async def ensure_event_topics(admin: AIOKafkaAdminClient, topic: str, stock_status_topic: str, partitions: int) -> None:
    """The event topic and its current-state topic: the events never compacted away (a compacted topic keeps only
    the last change of each pair), the states compacted (the last one of each pair is the point), and both with as
    many partitions, so a key has the same partition number on both (joins in Kafka Streams, Flink or ksqlDB need
    that)."""
    events = await ensure_topic(admin, topic, partitions, "delete")
    states = await ensure_topic(admin, stock_status_topic, events, "compact")
    if states != events:
        raise IncompatibleTopic(
            f"topic {stock_status_topic} has {states} partitions and {topic} {events}: they must have as many, so"
            " that a pair's state and events share a partition number; add partitions to the smaller one"
            " (kafka-topics.sh --alter --partitions) or set another KAFKA_STOCK_STATUS_TOPIC"
        )


async def partitions_of(admin: AIOKafkaAdminClient, topic: str) -> int:
    """The partitions of an existing topic (a topic just made by another client may need a moment to be known)."""
    for _ in range(50):
        (described,) = await admin.describe_topics([topic])
        if described["error_code"] == 0 and described["partitions"]:
            return len(described["partitions"])
        await asyncio.sleep(0.1)
    raise BridgeError(f"cannot describe topic {topic}: Kafka error {described['error_code']}")


async def ensure_topic(admin: AIOKafkaAdminClient, topic: str, partitions: int, cleanup_policy: str) -> int:
    """Creates the topic, or checks the one there; returns its partitions."""
    response = await admin.create_topics(
        [NewTopic(topic, partitions, 1, topic_configs={"cleanup.policy": cleanup_policy})]
    )
    (_, code, message), *_ = response.topic_errors
    if code == 0:
        log.info("created topic %s (%d partitions, cleanup.policy=%s)", topic, partitions, cleanup_policy)
        return partitions
    if code != TOPIC_ALREADY_EXISTS:
        raise BridgeError(f"cannot create topic {topic}: Kafka error {code}: {message}")
    (resource,) = (
        await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, configs={"cleanup.policy": None})]
        )
    )[0].resources
    entries = {entry[0]: entry[1] for entry in resource[4]}
    existing = entries.get("cleanup.policy", "")
    if existing != cleanup_policy:
        raise IncompatibleTopic(
            f"topic {topic} exists with cleanup.policy={existing}; the bridge needs cleanup.policy={cleanup_policy} "
            + (
                "(a compacted event topic keeps only the last change of each pair)"
                if cleanup_policy == "delete"
                else "(a state topic is read for the last record of each key)"
            )
            + "; change it with kafka-configs.sh or set another topic name"
        )
    return await partitions_of(admin, topic)
