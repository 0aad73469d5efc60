"""The consumers' settings, from the environment (or .env). Each consumer has its own group, start and port
settings (LOGGER_…, STORE_…), so one .env serves both. Only the store uses PostgreSQL."""

from typing import ClassVar, Literal

from pydantic import Field

from common.settings import KafkaSettings, StreamSettings
from db.config import DatabaseSettings

Start = Literal["earliest", "latest"]


class ConsumerSettings(KafkaSettings):
    consumer_metrics_host: str = "0.0.0.0"
    """Address of each consumer's /metrics, /healthz, /readyz."""

    # Each consumer's own settings are <prefix>_group, <prefix>_start and <prefix>_metrics_port.
    prefix: ClassVar[str]

    @property
    def group(self) -> str:
        return str(getattr(self, f"{self.prefix}_group"))

    @property
    def start(self) -> Start:
        start: Start = getattr(self, f"{self.prefix}_start")
        return start

    @property
    def metrics_port(self) -> int:
        return int(getattr(self, f"{self.prefix}_metrics_port"))


class LoggerSettings(ConsumerSettings):
    prefix = "logger"

    logger_group: str = Field(default="warehouse-logger", min_length=1, max_length=200)
    """The logger's consumer group."""
    logger_start: Start = "latest"
    """Where the logger's group starts when it has no committed offsets: `latest`, changes from now on."""
    logger_metrics_port: int = Field(default=9110, ge=1, le=65535)
    """The logger's /metrics, /healthz, /readyz."""


class StoreSettings(ConsumerSettings, DatabaseSettings):
    prefix = "store"

    store_group: str = Field(default="warehouse-store", min_length=1, max_length=200)
    """The store's consumer group. Two store processes of one group share the partitions."""
    store_start: Start = "earliest"
    """Where the store's group starts when it has no committed offsets: `earliest`, the whole topic."""
    store_metrics_port: int = Field(default=9111, ge=1, le=65535)
    """The store's /metrics, /healthz, /readyz."""


class MirrorSettings(ConsumerSettings, StreamSettings, DatabaseSettings):
    prefix = "mirror"

    # No group and no start: the mirror reads without a consumer group, bootstrapping at every start.
    mirror_metrics_port: int = Field(default=9112, ge=1, le=65535)
    """The mirror's /metrics, /healthz, /readyz."""
