"""The AsyncAPI 3.0 document of the topic, as the bridge publishes it: generated from the event model and the
bridge's settings into bridge/schema/asyncapi.json by `python -m bridge schema` (a test fails when the file is
stale or not a valid AsyncAPI 3.0 document). The message's payload is the JSON Schema next to it."""

import json
from typing import Any

from bridge.config import BridgeSettings
from bridge.events import CONTENT_TYPE, EVENT_TYPE, SCHEMA_FILE, SCHEMA_VERSION, STATE_SCHEMA_FILE, StatusChanged
from common.settings import DEFAULT_TOPIC, stock_status_topic_of

ASYNCAPI_FILE = SCHEMA_FILE.parent / "asyncapi.json"
KAFKA_BINDINGS = "0.5.0"


def _default(setting: str) -> Any:
    return BridgeSettings.model_fields[setting].default


def asyncapi() -> dict[str, Any]:
    statuses = StatusChanged.model_json_schema()["properties"]["new_status"]["enum"]
    headers = {
        "type": "object",
        "description": "CloudEvents 1.0 attributes in Kafka binary mode (the value is the event's data).",
        "required": [
            "ce_specversion",
            "ce_id",
            "ce_type",
            "ce_source",
            "ce_time",
            "ce_subject",
            "ce_sequence",
            "content-type",
        ],
        "properties": {
            "ce_specversion": {"type": "string", "const": "1.0"},
            "ce_id": {"type": "string", "format": "uuid", "description": "The value's event_id."},
            "ce_type": {"type": "string", "const": EVENT_TYPE},
            "ce_source": {
                "type": "string",
                "description": f"BRIDGE_EVENT_SOURCE, by default {_default('bridge_event_source')}.",
            },
            "ce_time": {"type": "string", "format": "date-time", "description": "The value's occurred_at."},
            "ce_subject": {"type": "string", "description": "The record's key: the pair, <product_id>:<warehouse_id>."},
            "ce_sequence": {
                "type": "string",
                "pattern": "^[0-9]{20}$",
                "description": "CloudEvents sequence extension: the value's seq, zero-padded to 20 digits so that"
                " it orders as text too. Ordered per ce_subject.",
            },
            "content-type": {"type": "string", "const": CONTENT_TYPE},
        },
    }
    stock_status_topic = stock_status_topic_of(DEFAULT_TOPIC)
    key = {
        "type": "string",
        "pattern": "^-?[0-9]+:-?[0-9]+$",
        "description": "<product_id>:<warehouse_id>: a pair's changes share a partition and keep their order.",
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "warehouse-tracker status changes",
            "version": str(SCHEMA_VERSION),
            "description": (
                "Every change of a (product, warehouse) pair's stock status (available, running low, out of stock),"
                " published by the bridge from PostgreSQL's outbox: each committed change exactly once, in order"
                " per pair, numbered per pair by seq (1, 2, 3…, no gaps), in Kafka transactions. Read with"
                " isolation.level=read_committed; order and de-duplicate by seq per key. The topic is KAFKA_TOPIC"
                f" ({DEFAULT_TOPIC} by default). Beside it, the compacted current-state topic"
                f" KAFKA_STOCK_STATUS_TOPIC ({stock_status_topic} by default) holds each pair's latest state,"
                " written in the same transactions: read it to its end, then the events from the offsets seen"
                " before, skipping seq up to the state's (docs/events.md, bootstrap)."
            ),
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "local": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "The broker `make stack` runs (KAFKA_BOOTSTRAP_SERVERS elsewhere).",
            }
        },
        "channels": {
            "statusChanges": {
                "address": DEFAULT_TOPIC,
                "title": "Stock status changes",
                "messages": {"statusChanged": {"$ref": "#/components/messages/StatusChanged"}},
                "bindings": {
                    "kafka": {
                        "topic": DEFAULT_TOPIC,
                        "partitions": _default("bridge_topic_partitions"),
                        "topicConfiguration": {"cleanup.policy": ["delete"]},
                        "bindingVersion": KAFKA_BINDINGS,
                    }
                },
            },
            "stockStatus": {
                "address": stock_status_topic,
                "title": "Each pair's current stock status",
                "messages": {"pairState": {"$ref": "#/components/messages/PairState"}},
                "bindings": {
                    "kafka": {
                        "topic": stock_status_topic,
                        "partitions": _default("bridge_topic_partitions"),
                        "topicConfiguration": {"cleanup.policy": ["compact"]},
                        "bindingVersion": KAFKA_BINDINGS,
                    }
                },
            },
        },
        "operations": {
            "publishStatusChanges": {
                "action": "send",
                "channel": {"$ref": "#/channels/statusChanges"},
                "summary": "The bridge publishes each committed status change once, in batches of Kafka transactions.",
                "messages": [{"$ref": "#/channels/statusChanges/messages/statusChanged"}],
            },
            "publishStockStatus": {
                "action": "send",
                "channel": {"$ref": "#/channels/stockStatus"},
                "summary": "With each batch of events, the latest state of each of its pairs, in the same transaction;"
                " `python -m bridge snapshot` writes every pair's.",
                "messages": [{"$ref": "#/channels/stockStatus/messages/pairState"}],
            },
        },
        "components": {
            "messages": {
                "StatusChanged": {
                    "name": "StatusChanged",
                    "title": "A stock status changed",
                    "summary": f"A pair's status went from one of {', '.join(statuses)} to another.",
                    "contentType": CONTENT_TYPE,
                    "headers": headers,
                    "payload": {"$ref": f"./{SCHEMA_FILE.name}"},
                    "bindings": {"kafka": {"key": key, "bindingVersion": KAFKA_BINDINGS}},
                },
                "PairState": {
                    "name": "PairState",
                    "title": "A pair's current stock status",
                    "summary": "The pair's state after its latest published change (seq); keyed like the events.",
                    "contentType": CONTENT_TYPE,
                    "payload": {"$ref": f"./{STATE_SCHEMA_FILE.name}"},
                    "bindings": {"kafka": {"key": key, "bindingVersion": KAFKA_BINDINGS}},
                },
            }
        },
    }


def asyncapi_text() -> str:
    return json.dumps(asyncapi(), indent=2) + "\n"
