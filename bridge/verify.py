"""`python -m bridge verify [--events]`: reconciles PostgreSQL with Kafka, reading both topics read_committed.

The current-state topic against the database: the last record of every pair has the pair's status and seq (for
a pair whose newest changes still wait in the outbox, the state of its last published one). With `--events`,
a full scan of the event topic too: per key, seq 1, 2, 3… without gap or repeat, each old_status the previous
new_status, no event_id twice, each key the pair of its value, and each pair's last seq what the database
published. Prints a summary and the first discrepancies; exits 1 when there is any. Progress on stderr.

Consistency while writers and the bridge run: the database is read first (one snapshot), then the topics up to
the offsets they had just after it (the state topic's settled: every transaction below them decided, see
common/kafka.py). The bridge deletes a published row only after its Kafka commit, so those offsets hold at least
everything the snapshot counts as published; a pair found further along than the snapshot (or not in it)
changed since, and is looked up again at the end (a second snapshot) before it counts as a discrepancy.

Memory: arrays of 8-byte numbers indexed by the pairs' sorted keys (≈ 60 bytes a pair with --events), and for
the duplicate event_ids a bit filter of 10 bits an event (1.2 MB a million events, at most 128 MiB), whose rare
hits (about 1 %) are counted exactly by a second pass; beyond MAYBE_TWICE_AT_MOST hits the rest go unchecked,
and the summary says so.
"""

import bisect
import json
import re
import sys
import time
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg

from bridge.config import BridgeSettings
from common.kafka import end_offsets, read_to
from db.queries import queries

STATUSES = ("available", "running_low", "out_of_stock")
CODE = {status: i for i, status in enumerate(STATUSES)}
ABSENT = -1
PROGRESS_EVERY_S = 1.0
RECHECK_AT_MOST = 100_000  # pairs found ahead of the first snapshot, looked up again at the end
FILTER_BITS_PER_EVENT = 10  # with 3 probes: ≈ 1.7 % false hits
FILTER_MAX_LOG2 = 30  # 2^30 bits: 128 MiB
MAYBE_TWICE_AT_MOST = 1_000_000
PAIR_KEY = re.compile(rb"^([0-9]{1,10}):([0-9]{1,10})$")
MAX_ID = 1 << 31


class VerifyError(Exception):
    """The check could not be made (a topic missing, an id out of range): exit 2."""


def pair_id(product_id: int, warehouse_id: int) -> int:
    if not (0 <= product_id < MAX_ID and 0 <= warehouse_id < MAX_ID):
        raise VerifyError(f"pair {product_id}:{warehouse_id}: the verifier handles ids from 0 to 2^31 - 1")
    return product_id << 32 | warehouse_id


def pair_name(pair: int) -> str:
    return f"{pair >> 32}:{pair & 0xFFFFFFFF}"


@dataclass
class Findings:
    """Discrepancies: counted by kind, the first `show` kept with their detail."""

    show: int
    counts: Counter[str] = field(default_factory=Counter)
    first: list[str] = field(default_factory=list)

    def add(self, kind: str, detail: str) -> None:
        self.counts[kind] += 1
        if len(self.first) < self.show:
            self.first.append(f"{kind}: {detail}")

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class Progress:
    """A line on stderr at most every second: `what: n of total records`."""

    def __init__(self, what: str, total: int) -> None:
        self.what, self.total, self.done, self.at = what, total, 0, 0.0

    def __call__(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.at >= PROGRESS_EVERY_S or self.done >= self.total:
            self.at = now
            share = f" ({100 * self.done / self.total:.0f} %)" if self.total else ""
            sys.stderr.write(f"{self.what}: {self.done:,} of {self.total:,} records{share}\n")


class Pairs:
    """The database's view of every pair, in key order: seq known (published + waiting), seq published, the
    published status (or, for a pair with nothing published or waiting, its status)."""

    def __init__(self) -> None:
        self.keys = array("q")
        self.seq = array("q")
        self.published = array("q")
        self.status = array("b")  # the status at seq `published`; ABSENT when unknown (nothing published, some waiting)

    async def load(self, conn: asyncpg.Connection) -> None:
        progress = Progress("database", await conn.fetchval("SELECT count(*) FROM stock_balance"))
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            async for row in conn.cursor(queries("verify")["pairs"], prefetch=10_000):
                self.keys.append(pair_id(row["product_id"], row["warehouse_id"]))
                self.seq.append(row["seq"])
                self.published.append(row["published_seq"])
                status = row["published_status"] or (row["status"] if row["waiting"] == 0 else None)
                self.status.append(CODE[status] if status else ABSENT)
                if len(self.keys) % 10_000 == 0:
                    progress(10_000)

    def index(self, pair: int) -> int | None:
        i = bisect.bisect_left(self.keys, pair)
        return i if i < len(self.keys) and self.keys[i] == pair else None


@dataclass
class Ahead:
    """Pairs a topic shows further along than the first snapshot: (pair, seq, topic)."""

    found: list[tuple[int, int, str]] = field(default_factory=list)
    overflow: int = 0

    def add(self, pair: int, seq: int, topic: str) -> None:
        if len(self.found) < RECHECK_AT_MOST:
            self.found.append((pair, seq, topic))
        else:
            self.overflow += 1


def _value(raw: bytes | None) -> dict[str, Any] | None:
    try:
        data = json.loads(raw) if raw is not None else None
    except (UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _int(data: dict[str, Any], name: str) -> int | None:
    value = data.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _pair(product: int | None, warehouse: int | None) -> int | None:
    """The pair's number, or None for ids that cannot be a pair's (a record to report, not a reason to stop)."""
    if product is None or warehouse is None or not (0 <= product < MAX_ID and 0 <= warehouse < MAX_ID):
        return None
    return pair_id(product, warehouse)


async def check_states(
    settings: BridgeSettings, pairs: Pairs, ends: dict[int, tuple[int, int]], findings: Findings, ahead: Ahead
) -> int:
    """The current-state topic's last record of each pair against the database; returns the records read."""
    topic = settings.kafka_stock_status_topic
    found = array("q", [ABSENT]) * len(pairs.keys)
    found_status = array("b", [ABSENT]) * len(pairs.keys)
    progress = Progress(f"state topic {topic}", sum(end - begin for begin, end in ends.values()))
    records = 0
    async for record in read_to(settings.kafka_bootstrap_servers, topic, ends, progress):
        records += 1
        where = f"partition {record.partition}, offset {record.offset}"
        data = _value(record.value)
        if record.value is None:  # a tombstone: the pair has no state
            key = PAIR_KEY.match(record.key or b"")
            if key and (pair := _pair(int(key[1]), int(key[2]))) is not None and (i := pairs.index(pair)) is not None:
                found[i] = ABSENT
            continue
        product, warehouse, seq = (
            (_int(data, n) for n in ("product_id", "warehouse_id", "seq")) if data else (None,) * 3
        )
        status = data.get("status") if data else None
        pair = _pair(product, warehouse)
        if pair is None or seq is None or status not in CODE:
            findings.add("not a pair state", f"{where}: {record.value[:200]!r}")
            continue
        if record.key != pair_name(pair).encode():
            findings.add("wrong key", f"{where}: key {record.key!r} for pair {pair_name(pair)}")
        i = pairs.index(pair)
        if i is None:  # a pair made after the database was read, or none at all: looked up again at the end
            ahead.add(pair, seq, "state topic")
            continue
        found[i], found_status[i] = seq, CODE[status]
    for i, pair in enumerate(pairs.keys):
        t, published, known = found[i], pairs.published[i], pairs.seq[i]
        name = pair_name(pair)
        if t == ABSENT:
            if published > 0 or known == 0:
                findings.add(
                    "missing state", f"{name}: no record; the database has seq {published} published"
                    " (run `python -m bridge snapshot`)",
                )  # fmt: skip
        elif t < published:
            findings.add("state behind", f"{name}: seq {t} on the topic, {published} published")
        elif t > known:
            ahead.add(pair, t, "state topic")
        elif t == published and pairs.status[i] != ABSENT and found_status[i] != pairs.status[i]:
            findings.add(
                "state differs", f"{name} at seq {t}: {STATUSES[found_status[i]]} on the topic,"
                f" {STATUSES[pairs.status[i]]} in the database",
            )  # fmt: skip
    return records


class SeenFilter:
    """A bit filter over event ids, sized for `events`: `add` says whether the id may have been added before. Its
    3 probes are slices of the id's random bits (a UUID 4's version and variant bits are left out)."""

    def __init__(self, events: int) -> None:
        self.log2 = min(FILTER_MAX_LOG2, max(13, (events * FILTER_BITS_PER_EVENT).bit_length()))
        self.bits = bytearray((1 << self.log2) // 8)

    def add(self, event_id: int) -> bool:
        mask, bits, seen = (1 << self.log2) - 1, self.bits, True
        # bits 0-29, 30-59 and 80-109: clear of the variant (62-63) and the version (76-79)
        for probe in (event_id & mask, (event_id >> 30) & mask, (event_id >> 80) & mask):
            byte, bit = probe >> 3, 1 << (probe & 7)
            if not bits[byte] & bit:
                seen = False
                bits[byte] |= bit
        return seen


async def check_events(
    settings: BridgeSettings, pairs: Pairs, ends: dict[int, tuple[int, int]], findings: Findings, ahead: Ahead
) -> tuple[int, int]:
    """The full scan of the event topic; returns (records, of which version 1)."""
    topic = settings.kafka_topic
    last_seq = array("q", [0]) * len(pairs.keys)
    last_status = array("b", [ABSENT]) * len(pairs.keys)
    total = sum(end - begin for begin, end in ends.values())
    seen, unchecked = SeenFilter(total), 0
    maybe_twice: set[int] = set()
    progress = Progress(f"event topic {topic}", total)
    truncated = any(begin > 0 for begin, _ in ends.values())  # retention deleted the oldest events
    records = v1 = 0
    async for record in read_to(settings.kafka_bootstrap_servers, topic, ends, progress):
        records += 1
        where = f"partition {record.partition}, offset {record.offset}"
        data = _value(record.value)
        version = data.get("schema_version") if data else None
        if isinstance(version, bool):
            version = None
        product, warehouse = (_int(data, n) for n in ("product_id", "warehouse_id")) if data else (None, None)
        old, new, seq = (data.get("old_status"), data.get("new_status"), _int(data, "seq")) if data else (None,) * 3
        try:
            event_id = UUID(str(data.get("event_id"))).int if data else None
        except ValueError:
            event_id = None
        if (
            version not in (1, 2) or (pair := _pair(product, warehouse)) is None or event_id is None
            or old not in CODE or new not in CODE or (version == 2 and (seq is None or seq < 1))
        ):  # fmt: skip
            findings.add("not an event", f"{where}: {(record.value or b'')[:200]!r}")
            continue
        if seen.add(event_id):
            if len(maybe_twice) < MAYBE_TWICE_AT_MOST:
                maybe_twice.add(event_id)
            else:
                unchecked += 1
        name = pair_name(pair)
        if record.key != name.encode():
            findings.add("wrong key", f"{where}: key {record.key!r} for pair {name}")
        i = pairs.index(pair)
        if i is None:  # made after the database was read, or none at all: looked up again at the end
            ahead.add(pair, seq or 0, "event topic")
            continue
        if last_status[i] != ABSENT and CODE[old] != last_status[i]:
            findings.add(
                "status chain broken", f"{where}: {name} goes from {old}, its previous event went to"
                f" {STATUSES[last_status[i]]}",
            )  # fmt: skip
        last_status[i] = CODE[new]
        if version == 1:
            v1 += 1
            continue
        assert seq is not None
        expected = last_seq[i] + 1
        # A partition whose beginning was deleted (retention) starts anywhere: its first seq of a pair is taken.
        if seq != expected and not (last_seq[i] == 0 and ends[record.partition][0] > 0):
            kind = "seq gap" if seq > expected else "seq repeated or backwards"
            findings.add(kind, f"{where}: {name} seq {seq} after {last_seq[i]}")
        last_seq[i] = max(last_seq[i], seq)
    for i, pair in enumerate(pairs.keys):
        if last_seq[i] == 0 and truncated:
            continue  # its events may all have been deleted by retention
        if last_seq[i] < pairs.published[i]:
            findings.add(
                "events missing",
                f"{pair_name(pair)}: last seq {last_seq[i]} on the topic, {pairs.published[i]} published",
            )
        elif last_seq[i] > pairs.seq[i]:
            ahead.add(pair, last_seq[i], "event topic")
    if maybe_twice:
        await _count_twice(settings, ends, maybe_twice, findings)
    if unchecked:
        findings.add("not checked", f"{unchecked:,} event ids past the {MAYBE_TWICE_AT_MOST:,} checked for duplicates")
    return records, v1


async def _count_twice(
    settings: BridgeSettings, ends: dict[int, tuple[int, int]], candidates: set[int], findings: Findings
) -> None:
    """The second pass: exact counts of the event ids the filter may have seen twice."""
    where: dict[int, list[str]] = {}
    progress = Progress(f"event topic {settings.kafka_topic}, duplicate check", sum(e - b for b, e in ends.values()))
    async for record in read_to(settings.kafka_bootstrap_servers, settings.kafka_topic, ends, progress):
        data = _value(record.value)
        try:
            event_id = UUID(str(data.get("event_id"))).int if data else None
        except ValueError:
            continue
        if event_id in candidates:
            where.setdefault(event_id, []).append(f"partition {record.partition}, offset {record.offset}")
    for event_id, places in where.items():
        if len(places) > 1:
            findings.add("event_id twice", f"{UUID(int=event_id)}: at {'; '.join(places)}")


async def recheck_ahead(conn: asyncpg.Connection, ahead: Ahead, findings: Findings) -> None:
    """Pairs the topics showed further along than the first snapshot, or not in it: still so in a snapshot taken
    after the topics were read is a record the bridge did not write."""
    if ahead.overflow:
        findings.add("not rechecked", f"{ahead.overflow} more pairs ahead of the database than {RECHECK_AT_MOST}")
    if not ahead.found:
        return
    products = [pair >> 32 for pair, _, _ in ahead.found]
    warehouses = [pair & 0xFFFFFFFF for pair, _, _ in ahead.found]
    rows = await conn.fetch(queries("verify")["pairs_again"], products, warehouses)
    known = {pair_id(r["product_id"], r["warehouse_id"]): r["seq"] for r in rows}
    for pair, seq, topic in ahead.found:
        if pair not in known:
            findings.add("unknown pair", f"{pair_name(pair)} on the {topic} has no balance row")
        elif seq > known[pair]:
            findings.add("ahead of the database", f"{pair_name(pair)}: seq {seq} on the {topic}, {known[pair]} known")


async def verify(
    settings: BridgeSettings,
    events: bool,
    show: int,
    out: Callable[[str], object] = lambda line: sys.stdout.write(line + "\n"),
) -> int:
    """Returns the number of discrepancies (after printing them)."""
    findings, ahead = Findings(show), Ahead()
    conn = await asyncpg.connect(settings.database_url)
    try:
        pairs = Pairs()
        await pairs.load(conn)
        try:
            # Events' offsets first: the states read then are at least as far along (written in the same
            # transactions).
            event_ends = await end_offsets(settings.kafka_bootstrap_servers, settings.kafka_topic) if events else {}
            state_ends = await end_offsets(
                settings.kafka_bootstrap_servers, settings.kafka_stock_status_topic, settled=True
            )
        except LookupError as e:
            raise VerifyError(str(e)) from e
        states = await check_states(settings, pairs, state_ends, findings, ahead)
        lines = [
            f"{len(pairs.keys):,} pairs in the database; {states:,} records on {settings.kafka_stock_status_topic}"
        ]
        if events:
            records, v1 = await check_events(settings, pairs, event_ends, findings, ahead)
            lines.append(
                f"{records:,} events on {settings.kafka_topic}"
                + (f" ({v1:,} of schema_version 1, without seq: only their statuses checked)" if v1 else "")
            )
        await recheck_ahead(conn, ahead, findings)
    finally:
        await conn.close()
    if findings.total:
        lines.append(
            f"{findings.total:,} discrepancies: " + ", ".join(f"{n:,} {k}" for k, n in findings.counts.most_common())
        )
        lines += [f"  {line}" for line in findings.first]
        if findings.total > len(findings.first):
            lines.append(f"  … and {findings.total - len(findings.first):,} more")
    else:
        lines.append("no discrepancies" + ("" if events else " (the state topic; --events scans the events too)"))
    for line in lines:
        out(line)
    return findings.total
