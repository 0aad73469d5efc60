"""The settings every process reads, and Kafka's. Each process's own settings class adds to these (PostgreSQL's
are db.config.DatabaseSettings). Every setting comes from the environment (upper case) or a `.env` file."""

from typing import Literal

from pydantic import Field
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
