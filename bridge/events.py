"""The contract of the topics: producer and consumers import it from here.

`warehouse.status-changes` (KAFKA_TOPIC): one record per status change. Value: the JSON of `StatusChanged`
(schema_version 2; consumers still read version 1, `StatusChangedV1`). Key: `"<product_id>:<warehouse_id>"`, so
one pair's changes share a partition and keep their order; `seq` numbers them per pair, 1, 2, 3… Headers:
CloudEvents 1.0 in binary mode (the `ce_` attributes as headers, the value being the event's data), with the
`sequence` extension.

`warehouse.stock-status` (KAFKA_STOCK_STATUS_TOPIC): compacted, keyed and partitioned like the event topic; value
the JSON of `PairState`, the pair's state after its latest published change. Written in the same Kafka
transactions as the events.

(The bridge takes the values ready-made from the SQL function status_change_batch, which a test holds to exactly
what these models serialise.) The JSON Schemas are generated into bridge/schema/ by `python -m bridge schema`; a
test fails when a file and its model drift apart.
"""

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

EVENT_TYPE = "warehouse.status.changed.v2"
SCHEMA_VERSION = 2
CONTENT_TYPE = "application/json"
SCHEMA_DIR = Path(__file__).parent / "schema"
SCHEMA_FILE = SCHEMA_DIR / "status-changed.v2.json"
STATE_SCHEMA_FILE = SCHEMA_DIR / "stock-status.v1.json"
V1_SCHEMA_FILE = SCHEMA_DIR / "status-changed.v1.json"
SEQUENCE_DIGITS = 20  # ce_sequence is zero-padded: the extension wants a lexicographically ordered string

Status = Literal["available", "running_low", "out_of_stock"]
Cause = Literal["receipt", "shipment", "transfer_in", "transfer_out", "adjustment", "threshold_change"]


def pair_key(product_id: int, warehouse_id: int) -> bytes:
    """The Kafka key of a pair, on both topics."""
    return f"{product_id}:{warehouse_id}".encode()


class StatusChanged(BaseModel):
    """A (product, warehouse) pair's stock status changed: one event per change, in the order they happened."""

    model_config = ConfigDict(frozen=True, extra="forbid", title="StatusChanged")

    event_id: UUID = Field(description="Unique per change; the CloudEvents id. Consumers de-duplicate on it.")
    schema_version: Literal[2] = Field(default=2, description="Version of this contract.")
    occurred_at: datetime = Field(description="When the change happened: the operation's time (UTC).")
    product_id: int
    warehouse_id: int
    seq: int = Field(
        ge=1,
        description="The n-th status change of this (product_id, warehouse_id), from 1, +1 per event in topic order"
        " per key, without gaps. The same change always carries the same seq (and event_id).",
    )
    old_status: Status
    new_status: Status
    quantity: int = Field(ge=0, description="Stock of the pair right after the change.")
    cause: Cause = Field(description="What made the change: the operation's type, or a threshold change.")
    operation_id: int | None = Field(
        description="The operation that caused the change; null when a threshold change caused it."
    )
    transfer_id: UUID | None = Field(
        description="The transfer the operation is a leg of (both legs share it); null for any other cause."
    )

    @property
    def key(self) -> bytes:
        return pair_key(self.product_id, self.warehouse_id)

    def value(self) -> bytes:
        return self.model_dump_json().encode()

    def headers(self, source: str) -> list[tuple[str, bytes]]:
        """CloudEvents binary-mode attributes, as Kafka headers."""
        return cloudevents_headers(str(self.event_id), self.occurred_at.isoformat(), source, self.key, self.seq)

    def state_after(self) -> "PairState":
        """The pair's record on the current-state topic once this change is its latest."""
        return PairState(
            product_id=self.product_id, warehouse_id=self.warehouse_id, status=self.new_status, seq=self.seq,
            quantity=self.quantity, changed_at=self.occurred_at, event_id=self.event_id,
        )  # fmt: skip


class StatusChangedV1(BaseModel):
    """Version 1 of the event, before `seq`, `cause` and `transfer_id`: still read by the consumers."""

    model_config = ConfigDict(frozen=True, extra="forbid", title="StatusChangedV1")

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
        return pair_key(self.product_id, self.warehouse_id)

    def value(self) -> bytes:
        return self.model_dump_json().encode()

    # What version 2 adds, unknown here: code reading both versions can ask for them.
    @property
    def seq(self) -> None:
        return None

    @property
    def cause(self) -> None:
        return None

    @property
    def transfer_id(self) -> None:
        return None


AnyStatusChanged = StatusChanged | StatusChangedV1


class PairState(BaseModel):
    """A pair's record on the current-state topic: its state after its latest published change."""

    model_config = ConfigDict(frozen=True, extra="forbid", title="PairState")

    product_id: int
    warehouse_id: int
    status: Status
    seq: int = Field(ge=0, description="The seq of the pair's latest change; 0: no change published yet.")
    quantity: int = Field(description="Stock of the pair right after that change (today's, when seq is 0).")
    changed_at: datetime = Field(description="When that change happened (UTC).")
    event_id: UUID | None = Field(description="That change's event_id; null when seq is 0.")

    @property
    def key(self) -> bytes:
        return pair_key(self.product_id, self.warehouse_id)

    def value(self) -> bytes:
        return self.model_dump_json().encode()


_SPECVERSION = ("ce_specversion", b"1.0")
_TYPE = ("ce_type", EVENT_TYPE.encode())
_CONTENT_TYPE = ("content-type", CONTENT_TYPE.encode())


_V1_TYPE = ("ce_type", b"warehouse.status.changed.v1")


def cloudevents_headers(event_id: str, time: str, source: str, key: bytes, seq: int | None) -> list[tuple[str, bytes]]:
    """The headers of one event: its id, its time (ISO 8601), its pair (the subject) and its seq (the sequence,
    ordered per subject), and the constant attributes. Without a seq: a version 1 event's (no subject, no
    sequence)."""
    if seq is None:
        return [_SPECVERSION, ("ce_id", event_id.encode()), _V1_TYPE, ("ce_source", source.encode()),
                ("ce_time", time.encode()), _CONTENT_TYPE]  # fmt: skip
    return [
        _SPECVERSION,
        ("ce_id", event_id.encode()),
        _TYPE,
        ("ce_source", source.encode()),
        ("ce_time", time.encode()),
        ("ce_subject", key),
        ("ce_sequence", str(seq).zfill(SEQUENCE_DIGITS).encode()),
        _CONTENT_TYPE,
    ]


def json_schema(model: type[BaseModel], name: str) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"urn:warehouse-tracker:{name}"
    return schema


SCHEMAS: dict[Path, tuple[type[BaseModel], str]] = {
    SCHEMA_FILE: (StatusChanged, EVENT_TYPE),
    V1_SCHEMA_FILE: (StatusChangedV1, "warehouse.status.changed.v1"),
    STATE_SCHEMA_FILE: (PairState, "warehouse.stock.status.v1"),
}


def json_schema_text(path: Path = SCHEMA_FILE) -> str:
    model, name = SCHEMAS[path]
    return json.dumps(json_schema(model, name), indent=2, sort_keys=True) + "\n"
