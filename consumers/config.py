"""The consumers' settings, from the environment (or .env)."""

from typing import Literal

from pydantic import Field

from bridge.config import DEFAULT_TOPIC
from db.config import DatabaseSettings


class ConsumerSettings(DatabaseSettings):
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    """Kafka brokers, host:port[,host:port…]."""
    kafka_topic: str = Field(default=DEFAULT_TOPIC, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._-]+$")
    """The topic of status changes."""
    consumer_group: str = Field(default="", max_length=200)
    """The consumer group; default `warehouse-logger` / `warehouse-store`. Two processes of one group share the
    partitions."""
    consumer_start: Literal["earliest", "latest"] | None = None
    """Where a group without committed offsets starts: the logger defaults to `latest` (changes from now on),
    the store to `earliest` (the whole topic)."""
    consumer_metrics_host: str = "0.0.0.0"
    """Address of /metrics, /healthz, /readyz."""
    consumer_metrics_port: int = Field(default=0, ge=0, le=65535)
    """Their port; default 9110 for the logger, 9111 for the store (0: that default)."""
