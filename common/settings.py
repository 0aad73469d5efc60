"""The settings every process reads, and Kafka's. Each process's own settings class adds to these (PostgreSQL's
are db.config.DatabaseSettings). Every setting comes from the environment (upper case) or a `.env` file."""

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_TOPIC = "warehouse.status-changes"

LogFormat = Literal["text", "json"]


class ProcessSettings(BaseSettings):
    """Read by every process."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", use_attribute_docstrings=True)

    log_format: LogFormat = "text"
    """Log lines: `text`, for people; `json`, one object a line: time, level, logger, message, and the line's context (partition, offset, events…)."""  # noqa: E501


class KafkaSettings(ProcessSettings):
    """Where the topic of status changes is."""

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    """Kafka brokers, host:port[,host:port…]."""
    kafka_topic: str = Field(default=DEFAULT_TOPIC, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._-]+$")
    """The topic of status changes (the bridge creates it when missing)."""


class StreamSettings(KafkaSettings):
    """Where both topics of the stream are: read by the processes that use the current-state topic too."""

    kafka_stock_status_topic: str = Field(default="", max_length=249, pattern=r"^[A-Za-z0-9._-]*$")
    """The compacted topic of every pair's current state, written with the events; default `warehouse.stock-status` (`<KAFKA_TOPIC>` with `.status-changes` made `.stock-status`, or with `.stock-status` added)."""  # noqa: E501

    @model_validator(mode="after")
    def _derive_stock_status_topic(self) -> "StreamSettings":
        if not self.kafka_stock_status_topic:
            self.kafka_stock_status_topic = stock_status_topic_of(self.kafka_topic)
        if self.kafka_stock_status_topic == self.kafka_topic:
            raise ValueError("KAFKA_STOCK_STATUS_TOPIC must differ from KAFKA_TOPIC")
        return self


def stock_status_topic_of(topic: str) -> str:
    """The current-state topic that goes with an event topic, unless set."""
    suffix = ".status-changes"
    return f"{topic.removesuffix(suffix)}.stock-status" if topic.endswith(suffix) else f"{topic}.stock-status"
