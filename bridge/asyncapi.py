"""The AsyncAPI 3.0 document of the topic, as the bridge publishes it: generated from the event model and the
bridge's settings into bridge/schema/asyncapi.json by `python -m bridge schema` (a test fails when the file is
stale or not a valid AsyncAPI 3.0 document). The message's payload is the JSON Schema next to it."""

import json
from typing import Any

from bridge.config import BridgeSettings
from bridge.events import CONTENT_TYPE, EVENT_TYPE, SCHEMA_FILE, SCHEMA_VERSION, StatusChanged
from common.settings import DEFAULT_TOPIC

ASYNCAPI_FILE = SCHEMA_FILE.parent / "asyncapi.json"
KAFKA_BINDINGS = "0.5.0"


def _default(setting: str) -> Any:
    return BridgeSettings.model_fields[setting].default


def asyncapi() -> dict[str, Any]:
    statuses = StatusChanged.model_json_schema()["properties"]["new_status"]["enum"]
    headers = {
        "type": "object",
        "description": "CloudEvents 1.0 attributes in Kafka binary mode (the value is the event's data).",
        "required": ["ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time", "content-type"],
        "properties": {
            "ce_specversion": {"type": "string", "const": "1.0"},
            "ce_id": {"type": "string", "format": "uuid", "description": "The value's event_id."},
            "ce_type": {"type": "string", "const": EVENT_TYPE},
            "ce_source": {
                "type": "string",
                "description": f"BRIDGE_EVENT_SOURCE, by default {_default('bridge_event_source')}.",
            },
            "ce_time": {"type": "string", "format": "date-time", "description": "The value's occurred_at."},
            "content-type": {"type": "string", "const": CONTENT_TYPE},
        },
    }
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
                " per pair, in Kafka transactions. Read with isolation.level=read_committed; de-duplicate on"
                " event_id if your own processing can repeat. The topic is "
                f"KAFKA_TOPIC ({DEFAULT_TOPIC} by default)."
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
            }
        },
        "operations": {
            "publishStatusChanges": {
                "action": "send",
                "channel": {"$ref": "#/channels/statusChanges"},
                "summary": "The bridge publishes each committed status change once, in batches of Kafka transactions.",
                "messages": [{"$ref": "#/channels/statusChanges/messages/statusChanged"}],
            }
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
                }
            }
        },
    }


def asyncapi_text() -> str:
    return json.dumps(asyncapi(), indent=2) + "\n"
