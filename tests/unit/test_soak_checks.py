"""The soak's stream checks fail when the stream is wrong (they are only run by `make soak`, so they are held
to it here, with made-up records)."""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from bridge.events import StatusChanged
from tests.soak import Checks, Observed, check_stream


@dataclass
class Record:
    key: bytes
    value: bytes
    partition: int
    offset: int
    headers: list[tuple[str, bytes]]


def observed(events: int = 4) -> Observed:
    """A consistent stream: `events` changes of pair 1:1, then one of 2:1, all published once, in order."""
    changes = [
        StatusChanged(
            event_id=uuid.uuid4(), occurred_at=datetime(2026, 11, 27, tzinfo=UTC), product_id=1 if i < events else 2,
            warehouse_id=1, old_status="out_of_stock", new_status="running_low", quantity=1, operation_id=i,
            seq=i + 1 if i < events else 1, cause="receipt", transfer_id=None,
        )
        for i in range(events + 1)
    ]  # fmt: skip
    records = [Record(c.key, c.value(), 0, offset, c.headers("/test")) for offset, c in enumerate(changes)]
    produced = {str(c.event_id): (outbox_id, c.key.decode()) for outbox_id, c in enumerate(changes, start=10)}
    log: dict[str, tuple[object, ...]] = {
        str(c.event_id): (0, r.offset, c.occurred_at, c.product_id, c.warehouse_id, c.old_status, c.new_status,
                          c.quantity, c.operation_id)
        for c, r in zip(changes, records, strict=True)
    }  # fmt: skip
    return Observed(produced, records, changes, log, len(changes))


def failed(seen: Observed) -> list[str]:
    checks = Checks()
    check_stream(seen, checks)
    return checks.failed


def test_a_consistent_stream_passes() -> None:
    assert failed(observed()) == []


def test_nothing_produced_fails() -> None:
    assert "exactly once" in failed(Observed({}, [], [], {}, 0))


def test_a_duplicate_fails() -> None:
    seen = observed()
    seen.records.append(seen.records[0])
    seen.events.append(seen.events[0])
    assert {"exactly once", "counter = topic = log"} <= set(failed(seen))


def test_a_missing_event_fails() -> None:
    seen = observed()
    seen.produced[str(uuid.uuid4())] = (99, "1:1")
    assert "exactly once" in failed(seen)


def test_a_pair_out_of_order_fails() -> None:
    seen = observed()
    first, second = (str(e.event_id) for e in seen.events[:2])
    seen.produced[first], seen.produced[second] = seen.produced[second], seen.produced[first]
    assert failed(seen) == ["per-pair order"]


def test_a_seq_that_jumps_fails() -> None:
    seen = observed()
    seen.events[2] = seen.events[2].model_copy(update={"seq": 9})
    assert failed(seen) == ["per-pair seq 1, 2, 3…"]


@pytest.mark.parametrize("wrong", ["key", "ce_id", "partition"])
def test_a_record_that_is_not_its_pairs_fails(wrong: str) -> None:
    seen = observed()
    record = seen.records[1]
    if wrong == "key":
        record.key = b"7:7"
    elif wrong == "ce_id":
        record.headers = [("ce_id", b"something else")]
    else:
        record.partition = 3
    assert "per-pair order" in failed(seen)


def test_a_log_that_differs_from_the_topic_fails() -> None:
    seen = observed()
    event_id = str(seen.events[2].event_id)
    seen.log[event_id] = (*seen.log[event_id][:-2], 5, seen.log[event_id][-1])  # another quantity
    assert failed(seen) == ["event log = topic"]
    del seen.log[event_id]
    assert set(failed(seen)) == {"event log = topic", "counter = topic = log"}
