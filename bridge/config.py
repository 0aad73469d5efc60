"""The bridge's settings, from the environment (or .env)."""

from pydantic import Field, model_validator

from common.settings import StreamSettings
from db.config import DatabaseSettings


class BridgeSettings(DatabaseSettings, StreamSettings):
    bridge_state_topic: str = Field(default="", max_length=249, pattern=r"^[A-Za-z0-9._-]*$")
    """Compacted topic recording which outbox rows each committed batch held; default `<KAFKA_TOPIC>.bridge-state`."""
    bridge_transactional_id: str = Field(default="", max_length=200)
    """The producer's transactional id, one per deployment; default `warehouse-bridge.<KAFKA_TOPIC>`."""
    bridge_topic_partitions: int = Field(default=6, ge=1, le=10_000)
    """Partitions of the topic when the bridge creates it."""
    bridge_poll_interval: float = Field(default=1.0, gt=0, le=3600)
    """Seconds between looks at the outbox when no notification comes (the fallback to LISTEN)."""
    bridge_batch_size: int = Field(default=1000, ge=1, le=10_000)
    """Outbox rows per Kafka transaction (at most 10,000: the batch's state record must stay under 1 MB)."""
    bridge_transaction_timeout: float = Field(default=30.0, ge=5, le=900)
    """Seconds a Kafka transaction may take before the bridge gives it up and starts over."""
    bridge_metrics_host: str = "0.0.0.0"
    """Address of the metrics and health endpoints (/metrics, /healthz, /readyz)."""
    bridge_metrics_port: int = Field(default=9108, ge=1, le=65535)
    """Port of the metrics and health endpoints."""
    bridge_event_source: str = Field(default="/warehouse-tracker/bridge", min_length=1)
    """The CloudEvents `ce_source` of every event."""

    @model_validator(mode="after")
    def _derive_names(self) -> "BridgeSettings":
        if not self.bridge_state_topic:
            self.bridge_state_topic = f"{self.kafka_topic}.bridge-state"
        if not self.bridge_transactional_id:
            self.bridge_transactional_id = f"warehouse-bridge.{self.kafka_topic}"
        if self.bridge_state_topic in (self.kafka_topic, self.kafka_stock_status_topic):
            raise ValueError("BRIDGE_STATE_TOPIC must differ from KAFKA_TOPIC and KAFKA_STOCK_STATUS_TOPIC")
        return self
