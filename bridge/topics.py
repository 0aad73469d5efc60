"""The bridge's two topics: created when missing, refused when they exist with settings that would lose events."""

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
    """Both topics exist, with the settings the bridge needs (raises IncompatibleTopic otherwise)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        # Events must never be compacted away: a compacted topic keeps only the last change of each pair.
        await _ensure(admin, settings.kafka_topic, settings.bridge_topic_partitions, "delete")
        # The state topic is read for its last record per transactional id: compaction keeps exactly that.
        await _ensure(admin, settings.bridge_state_topic, 1, "compact")
    finally:
        await admin.close()


async def _ensure(admin: AIOKafkaAdminClient, topic: str, partitions: int, cleanup_policy: str) -> None:
    response = await admin.create_topics(
        [NewTopic(topic, partitions, 1, topic_configs={"cleanup.policy": cleanup_policy})]
    )
    (_, code, message), *_ = response.topic_errors
    if code == 0:
        log.info("created topic %s (%d partitions, cleanup.policy=%s)", topic, partitions, cleanup_policy)
        return
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
                else "(the state topic is read for its last record)"
            )
            + "; change it with kafka-configs.sh or set another topic name"
        )
