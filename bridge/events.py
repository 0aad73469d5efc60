"""The event contract of the topic `warehouse.status-changes`: producer and consumers import it from here.

Value: the JSON of `StatusChanged`. (The bridge takes it ready-made from the view status_change_events, which
a test holds to exactly what this model serialises.) Key: `"<product_id>:<warehouse_id>"`, so one pair's changes share a
partition and keep their order. Headers: CloudEvents 1.0 in binary mode (the `ce_` attributes as headers,
the value being the event's data). The JSON Schema of the value is generated into bridge/schema/ by
`python -m bridge schema`; a test fails when the file and the model drift apart.
"""

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

EVENT_TYPE = "warehouse.status.changed.v1"
SCHEMA_VERSION = 1
CONTENT_TYPE = "application/json"
SCHEMA_FILE = Path(__file__).parent / "schema" / "status-changed.v1.json"

Status = Literal["available", "running_low", "out_of_stock"]


class StatusChanged(BaseModel):
    """A (product, warehouse) pair's stock status changed: one event per change, in the order they happened."""

    model_config = ConfigDict(frozen=True, extra="forbid", title="StatusChanged")

    event_id: UUID = Field(description="Unique per change; the CloudEvents id. Consumers de-duplicate on it.")
    schema_version: Literal[1] = Field(default=1, description="Version of this contract.")
    occurred_at: datetime = Field(description="When the change happened: the operation's time (UTC).")
    product_id: int
    warehouse_id: int
    old_status: Status
    new_status: Status
    quantity: int = Field(ge=0, description="Stock of the pair right after the change.")
    operation_id: int | None = Field(
        description="The operation that caused the change; null when a threshold change caused it."
    )

    @property
    def key(self) -> bytes:
        return f"{self.product_id}:{self.warehouse_id}".encode()

    def value(self) -> bytes:
        return self.model_dump_json().encode()

    def headers(self, source: str) -> list[tuple[str, bytes]]:
        """CloudEvents binary-mode attributes, as Kafka headers."""
        return cloudevents_headers(str(self.event_id), self.occurred_at.isoformat(), source)


_SPECVERSION = ("ce_specversion", b"1.0")
_TYPE = ("ce_type", EVENT_TYPE.encode())
_CONTENT_TYPE = ("content-type", CONTENT_TYPE.encode())


def cloudevents_headers(event_id: str, time: str, source: str) -> list[tuple[str, bytes]]:
    """The headers of one event: its id, its time (ISO 8601), and the constant attributes."""
    return [
        _SPECVERSION,
        ("ce_id", event_id.encode()),
        _TYPE,
        ("ce_source", source.encode()),
        ("ce_time", time.encode()),
        _CONTENT_TYPE,
    ]


def json_schema() -> dict[str, Any]:
    schema = StatusChanged.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"urn:warehouse-tracker:{EVENT_TYPE}"
    return schema


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
