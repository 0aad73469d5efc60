"""Reading the messages of the topic: the events, or why one is skipped."""

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from pydantic import ValidationError

from bridge.events import AnyStatusChanged, StatusChanged, StatusChangedV1

MODELS: dict[object, type[StatusChanged] | type[StatusChangedV1]] = {2: StatusChanged, 1: StatusChangedV1}


@dataclass(frozen=True)
class Skipped:
    reason: str


def parse(value: bytes | None) -> AnyStatusChanged | Skipped:
    """A message's value as a StatusChanged (version 2) or StatusChangedV1; a value that is not one (not JSON,
    another schema_version, a field missing or wrong) is Skipped with the reason."""
    if value is None:
        return Skipped("no value (a tombstone)")
    try:
        data: Any = json.loads(value)
    except (UnicodeDecodeError, ValueError) as e:
        return Skipped(f"not JSON: {e}")
    if not isinstance(data, dict):
        return Skipped(f"not a JSON object: {type(data).__name__}")
    version = data.get("schema_version")
    model = MODELS.get(version) if isinstance(version, int) and not isinstance(version, bool) else None
    if model is None:
        return Skipped(f"schema_version {version!r}; this consumer reads 1 and 2")
    try:
        event = model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        return Skipped(f"not a StatusChanged: {'.'.join(map(str, first['loc']))}: {first['msg']}")
    if not all(-(2**63) <= n < 2**63 for n in (event.product_id, event.warehouse_id, event.quantity,
                                                event.operation_id or 0, event.seq or 0)):  # fmt: skip
        return Skipped("a number out of the 64-bit range")
    try:
        event.occurred_at.astimezone(UTC)
    except OverflowError:
        return Skipped(f"occurred_at out of range: {event.occurred_at}")
    return event


def events_of(
    messages: Iterable[Any], log: logging.Logger, on_skip: Callable[[], None] = lambda: None
) -> list[tuple[Any, AnyStatusChanged]]:
    """The (message, event) pairs of `messages`, in order. A message that is not an event is skipped and reported:
    a log line naming its partition and offset, and `on_skip()`."""
    events = []
    for message in messages:
        parsed = parse(message.value)
        if isinstance(parsed, Skipped):
            on_skip()
            log.warning(
                "skipped the message at partition %d, offset %d: %s", message.partition, message.offset, parsed.reason,
                extra={"partition": message.partition, "offset": message.offset},
            )  # fmt: skip
        else:
            events.append((message, parsed))
    return events
