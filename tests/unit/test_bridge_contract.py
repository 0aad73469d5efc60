"""The event contract and the bridge's settings, as producer and consumers rely on them."""

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from pydantic import ValidationError

from bridge.asyncapi import ASYNCAPI_FILE, asyncapi_text
from bridge.config import BridgeSettings
from bridge.events import (
    EVENT_TYPE,
    SCHEMA_FILE,
    SCHEMAS,
    STATE_SCHEMA_FILE,
    PairState,
    StatusChanged,
    json_schema_text,
)
from common.settings import DEFAULT_TOPIC

# The AsyncAPI 3.0.0 specification's own JSON Schema, from the npm package @asyncapi/specs (see tests/data/).
ASYNCAPI_SPEC = json.loads((Path(__file__).parents[1] / "data" / "asyncapi-3.0.0.schema.json").read_text())


def change(**overrides: object) -> StatusChanged:
    fields: dict[str, object] = {
        "event_id": uuid.UUID("0b5e4b47-9d2c-4d55-9a36-5d4f1c7a0c11"),
        "occurred_at": datetime(2026, 11, 27, 6, 0, tzinfo=UTC),
        "product_id": 3,
        "warehouse_id": 5,
        "old_status": "running_low",
        "new_status": "available",
        "seq": 12,
        "quantity": 42,
        "cause": "receipt",
        "operation_id": 7,
        "transfer_id": None,
    }
    return StatusChanged.model_validate(fields | overrides)


@pytest.mark.parametrize("path", list(SCHEMAS), ids=lambda p: p.name)
def test_the_committed_json_schemas_are_the_models(path: Path) -> None:
    assert path.read_text(encoding="utf-8") == json_schema_text(path), (
        f"bridge/schema/{path.name} is stale: run `python -m bridge schema` and commit the file"
    )


def test_the_committed_asyncapi_document_is_current_and_valid() -> None:
    assert ASYNCAPI_FILE.read_text(encoding="utf-8") == asyncapi_text(), (
        "bridge/schema/asyncapi.json is stale: run `python -m bridge schema` and commit the file"
    )
    spec = jsonschema_rs.validator_for(ASYNCAPI_SPEC)
    document = json.loads(ASYNCAPI_FILE.read_text())
    assert [str(e) for e in spec.iter_errors(document)] == []
    broken = json.loads(ASYNCAPI_FILE.read_text())  # the validator does look: an AsyncAPI 2 action is refused
    broken["operations"]["publishStatusChanges"]["action"] = "publish"
    assert not spec.is_valid(broken)


def test_the_asyncapi_document_describes_what_the_bridge_sends() -> None:
    document: dict[str, Any] = json.loads(ASYNCAPI_FILE.read_text())
    channel = document["channels"]["statusChanges"]
    assert channel["address"] == DEFAULT_TOPIC == BridgeSettings.model_fields["kafka_topic"].default
    message = document["components"]["messages"]["StatusChanged"]
    assert (ASYNCAPI_FILE.parent / message["payload"]["$ref"]).resolve() == SCHEMA_FILE.resolve()
    event = change()
    source = BridgeSettings.model_fields["bridge_event_source"].default
    headers = {name: value.decode() for name, value in event.headers(source)}
    assert jsonschema_rs.validator_for(message["headers"]).is_valid(headers)
    assert not jsonschema_rs.validator_for(message["headers"]).is_valid({**headers, "ce_type": "other"})
    key = jsonschema_rs.validator_for(message["bindings"]["kafka"]["key"])
    assert key.is_valid(event.key.decode()) and key.is_valid(change(product_id=-3).key.decode())
    assert jsonschema_rs.validator_for(json.loads(SCHEMA_FILE.read_text())).is_valid(json.loads(event.value()))
    state_message = document["components"]["messages"]["PairState"]
    assert (ASYNCAPI_FILE.parent / state_message["payload"]["$ref"]).resolve() == STATE_SCHEMA_FILE.resolve()
    assert document["channels"]["stockStatus"]["address"] == "warehouse.stock-status"
    state = PairState(product_id=3, warehouse_id=5, status="available", seq=12, quantity=42,
                      changed_at=event.occurred_at, event_id=event.event_id)  # fmt: skip
    assert jsonschema_rs.validator_for(json.loads(STATE_SCHEMA_FILE.read_text())).is_valid(json.loads(state.value()))


def test_key_value_and_cloudevents_headers() -> None:
    event = change()
    assert event.key == b"3:5"
    assert json.loads(event.value()) == {
        "event_id": "0b5e4b47-9d2c-4d55-9a36-5d4f1c7a0c11",
        "schema_version": 2,
        "occurred_at": "2026-11-27T06:00:00Z",
        "product_id": 3,
        "warehouse_id": 5,
        "seq": 12,
        "old_status": "running_low",
        "new_status": "available",
        "quantity": 42,
        "cause": "receipt",
        "operation_id": 7,
        "transfer_id": None,
    }
    assert dict(event.headers("/here")) == {
        "ce_specversion": b"1.0",
        "ce_id": b"0b5e4b47-9d2c-4d55-9a36-5d4f1c7a0c11",
        "ce_type": EVENT_TYPE.encode(),
        "ce_source": b"/here",
        "ce_time": b"2026-11-27T06:00:00+00:00",
        "ce_subject": b"3:5",
        "ce_sequence": b"00000000000000000012",
        "content-type": b"application/json",
    }
    assert StatusChanged.model_validate_json(event.value()) == event


@pytest.mark.parametrize(
    "bad",
    [
        {"new_status": "sold_out"},
        {"quantity": -1},
        {"schema_version": 1},
        {"colour": "red"},
        {"seq": 0},
        {"cause": "theft"},
    ],
)
def test_a_malformed_event_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        change(**bad)


def test_events_are_immutable() -> None:
    with pytest.raises(ValidationError):
        change().quantity = 1


def test_state_topic_and_transactional_id_follow_the_topic_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BRIDGE_STATE_TOPIC", "BRIDGE_TRANSACTIONAL_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAFKA_TOPIC", "eu.status-changes")
    derived = BridgeSettings()
    assert derived.bridge_state_topic == "eu.status-changes.bridge-state"
    assert derived.bridge_transactional_id == "warehouse-bridge.eu.status-changes"
    monkeypatch.setenv("BRIDGE_STATE_TOPIC", "eu.state")
    monkeypatch.setenv("BRIDGE_TRANSACTIONAL_ID", "eu-bridge")
    assert (BridgeSettings().bridge_state_topic, BridgeSettings().bridge_transactional_id) == ("eu.state", "eu-bridge")


@pytest.mark.parametrize(
    ("name", "value"),
    [("KAFKA_TOPIC", "has space"), ("BRIDGE_POLL_INTERVAL", "0"), ("BRIDGE_BATCH_SIZE", "0"),
     ("BRIDGE_STATE_TOPIC", "warehouse.status-changes")],
)  # fmt: skip
def test_bad_settings_are_refused(name: str, value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_TOPIC", raising=False)
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        BridgeSettings()
