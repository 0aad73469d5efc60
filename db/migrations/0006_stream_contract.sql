-- The stream's contract, version 2: each event carries `seq`, the n-th status change of its (product, warehouse)
-- pair, from 1 and without gaps; its `cause`; its `transfer_id`. And the pair's latest published state, for the
-- current-state topic and the snapshot.
--
-- Where `seq` is assigned (docs/architecture.md, "The per-pair sequence"): by the bridge, not by the writers.
-- Numbering in the trigger costs every single-operation transaction ≈ 12.6k CPU instructions (+3.4 %, an extra
-- column computed in the one-row update), and the set-based path cannot count a pair's changes in its one upsert
-- (they depend on the old quantity, known only inside SET), so COPY would pay a second write per changed pair.
-- Numbered here, the writers pay nothing: a pair's seq is its count of published changes
-- (status_change_published, kept by the deletion of published outbox rows, in the bridge's transaction) plus its
-- rank among its rows still in the outbox. Per pair, outbox ids follow commit order (the id is drawn under the
-- pair's row lock), so the rank never changes while a row waits, and a row sent again after a crash gets the
-- number it had: a row's seq is fixed the moment it commits.

-- The changes committed before this migration are events of schema_version 1, whichever bridge publishes them
-- (an older bridge may have published some already, and the recovery of a new one deletes what the last batch of
-- an old one held): outbox ids from first_id on are numbered, from 1 per pair. An id is drawn before its
-- transaction commits, so a change drawn before this migration and committed after it is of version 1 too.
CREATE TABLE status_change_v2_start (first_id bigint NOT NULL);
INSERT INTO status_change_v2_start
SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM status_change_outbox_id_seq;

-- One row per pair with a published change of version 2: how many, and the last one.
CREATE TABLE status_change_published (
    product_id   bigint       NOT NULL,
    warehouse_id bigint       NOT NULL,
    seq          bigint       NOT NULL CHECK (seq > 0),  -- published changes of the pair: the last one's seq
    status       stock_status NOT NULL,                  -- the last published change's new status
    quantity     bigint       NOT NULL,
    changed_at   timestamptz  NOT NULL,
    event_id     uuid         NOT NULL,
    PRIMARY KEY (product_id, warehouse_id)
) WITH (fillfactor = 50);  -- rewritten by every batch that changes the pair: HOT updates, as stock_balance

-- The deletion of outbox rows counts them twice over: into the global counter (as before), and, from first_id
-- on, per pair. Pairs are upserted in key order, so two deleting transactions cannot deadlock here; they do wait
-- for each other on a pair they share (the bridge is the one regular deleter, one transaction at a time).
CREATE OR REPLACE FUNCTION count_removed_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM removed) THEN
        RETURN NULL;
    END IF;
    WITH folded AS (
        DELETE FROM status_change_counter
         WHERE ctid IN (SELECT ctid FROM status_change_counter FOR UPDATE SKIP LOCKED)
        RETURNING changes
    )
    INSERT INTO status_change_counter (changes)
    SELECT (SELECT coalesce(sum(changes), 0) FROM folded) + (SELECT count(*) FROM removed);
    INSERT INTO status_change_published AS p (product_id, warehouse_id, seq, status, quantity, changed_at, event_id)
    SELECT DISTINCT ON (product_id, warehouse_id)
           product_id, warehouse_id, count(*) OVER (PARTITION BY product_id, warehouse_id),
           new_status, quantity, occurred_at, event_id
      FROM removed
     WHERE id >= (SELECT first_id FROM status_change_v2_start)
     ORDER BY product_id, warehouse_id, id DESC
    ON CONFLICT (product_id, warehouse_id) DO UPDATE
       SET seq = p.seq + excluded.seq, status = excluded.status, quantity = excluded.quantity,
           changed_at = excluded.changed_at, event_id = excluded.event_id;
    RETURN NULL;
END
$$;

-- Every pair's current sequence number and status as the database knows them (published changes plus those
-- still waiting in the outbox), and as published. What the verifier and the tests compare the topics with.
CREATE VIEW stock_status_seq AS
    SELECT b.product_id, b.warehouse_id, b.status, b.quantity,
           coalesce(p.seq, 0) + coalesce(w.waiting, 0) AS seq,
           coalesce(p.seq, 0) AS published_seq,
           p.status AS published_status,  -- NULL while nothing of the pair is published
           coalesce(w.waiting, 0) AS waiting
      FROM stock_balance b
      LEFT JOIN status_change_published p USING (product_id, warehouse_id)
      LEFT JOIN (SELECT product_id, warehouse_id, count(*) AS waiting
                   FROM status_change_outbox
                  WHERE id >= (SELECT first_id FROM status_change_v2_start)
                  GROUP BY product_id, warehouse_id) w USING (product_id, warehouse_id);

-- An event's time as the models write it (migration 0003), with one to_char instead of three (≈ 7 µs a call of a
-- batch's few thousand).
CREATE OR REPLACE FUNCTION event_time(at timestamptz, utc_suffix text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT replace(to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'), '.000000', '') || utc_suffix
$$;

-- The bridge's batch: the `size` oldest outbox rows after id `after_id` (0: from the start), each with its Kafka
-- key, its JSON value (the event, schema_version 2), its CloudEvents id, time and sequence, and, on the last row
-- of each pair in the batch, `state`: the JSON of the pair's record on the current-state topic. Made here so the
-- bridge only moves bytes (serialising in Python cost the bridge about half its CPU).
-- With after_id > 0 the rows up to it are a batch still being published (not deleted yet): they count towards
-- the seq of their pairs' later rows. Rows from before this migration (status_change_v2_start) come out as
-- version 1 events: no seq, no state.
-- The values are exactly what bridge/events.py's StatusChanged and PairState serialise to (field order, compact
-- separators, times in UTC with microseconds only when there are any, "Z" in the value and "+00:00" in
-- ce_time): a test compares them for every kind of row, and fails when either side changes alone.
CREATE FUNCTION status_change_batch(after_id bigint, size integer)
RETURNS TABLE (id bigint, key text, value text, state text, seq bigint, ce_id text, ce_time text,
               occurred_epoch float8)
LANGUAGE sql STABLE AS $$
    WITH start AS (SELECT first_id FROM status_change_v2_start),
    in_flight AS (
        SELECT product_id, warehouse_id, count(*) AS n
          FROM status_change_outbox
         WHERE id <= after_id AND id >= (SELECT first_id FROM start)
         GROUP BY product_id, warehouse_id
    ),
    batch AS (
        SELECT o.*,
               row_number() OVER (PARTITION BY o.product_id, o.warehouse_id, o.v2 ORDER BY o.id) AS rank,
               row_number() OVER (PARTITION BY o.product_id, o.warehouse_id, o.v2 ORDER BY o.id DESC) AS from_last
          FROM (SELECT x.*, x.id >= (SELECT first_id FROM start) AS v2
                  FROM status_change_outbox x WHERE x.id > after_id ORDER BY x.id LIMIT size) o
    ),
    numbered AS (
        SELECT b.*, CASE WHEN b.v2 THEN coalesce(p.seq, 0) + coalesce(f.n, 0) + b.rank END AS seq,
               CASE WHEN b.operation_id IS NULL THEN 'threshold_change' ELSE w.operation_type::text END AS cause,
               w.transfer_id, event_time(b.occurred_at, 'Z') AS at
          FROM batch b
          -- Lookups by key, one per row (LATERAL, and OFFSET 0 so the planner keeps them so): as joins, the
          -- planner hashed the whole ledger for a batch of a thousand rows (≈ 25 ms a batch at 100k operations).
          LEFT JOIN LATERAL (SELECT seq FROM status_change_published x
                              WHERE x.product_id = b.product_id AND x.warehouse_id = b.warehouse_id OFFSET 0) p ON true
          LEFT JOIN in_flight f ON f.product_id = b.product_id AND f.warehouse_id = b.warehouse_id
          LEFT JOIN LATERAL (SELECT operation_type, transfer_id FROM warehouse_operations x
                              WHERE x.id = b.operation_id OFFSET 0) w ON true
    )
    SELECT id,
           product_id || ':' || warehouse_id,
           CASE WHEN NOT v2 THEN
               '{"event_id":"' || event_id
               || '","schema_version":1,"occurred_at":"' || at
               || '","product_id":' || product_id
               || ',"warehouse_id":' || warehouse_id
               || ',"old_status":"' || old_status
               || '","new_status":"' || new_status
               || '","quantity":' || quantity
               || ',"operation_id":' || coalesce(operation_id::text, 'null')
               || '}'
           ELSE
           '{"event_id":"' || event_id
               || '","schema_version":2,"occurred_at":"' || at
               || '","product_id":' || product_id
               || ',"warehouse_id":' || warehouse_id
               || ',"seq":' || seq
               || ',"old_status":"' || old_status
               || '","new_status":"' || new_status
               || '","quantity":' || quantity
               || ',"cause":"' || cause
               || '","operation_id":' || coalesce(operation_id::text, 'null')
               || ',"transfer_id":' || coalesce('"' || transfer_id || '"', 'null')
               || '}'
           END,
           CASE WHEN v2 AND from_last = 1 THEN
               '{"product_id":' || product_id
               || ',"warehouse_id":' || warehouse_id
               || ',"status":"' || new_status
               || '","seq":' || seq
               || ',"quantity":' || quantity
               || ',"changed_at":"' || at
               || '","event_id":"' || event_id
               || '"}'
           END,
           seq,
           event_id::text,
           left(at, -1) || '+00:00',  -- the same time, as CloudEvents writes it (event_time costs ≈ 7 µs)
           extract(epoch FROM occurred_at)::float8
      FROM numbered
     ORDER BY id
$$;

DROP VIEW status_change_events;

-- The current-state snapshot (`python -m bridge snapshot`): a request, carried out by the leading bridge between
-- its batches, a chunk of pairs per Kafka transaction, in key order. One row per transactional id (deployment).
CREATE TABLE state_snapshots (
    transactional_id text        PRIMARY KEY,
    requested_at     timestamptz NOT NULL DEFAULT now(),
    pairs            bigint      NOT NULL,  -- pairs in stock_balance when it was requested, for the progress
    written          bigint      NOT NULL DEFAULT 0,
    after_product    bigint,  -- the last pair written; NULL: none yet
    after_warehouse  bigint,
    finished_at      timestamptz
);

-- The stored event log keeps the version 2 fields too, so the topic can be rebuilt from it (`python -m bridge
-- republish`). NULL in the rows of version 1 events.
ALTER TABLE status_change_log
    ADD COLUMN seq bigint,
    ADD COLUMN cause text,
    ADD COLUMN transfer_id uuid;
-- Republish reads the log in key order, each pair's events in the order they happened.
-- (Version 1 rows, without seq, first: by where they were read, a pair's in one partition.)
CREATE INDEX status_change_log_pair ON status_change_log
    (product_id, warehouse_id, (coalesce(seq, 0)), kafka_partition, kafka_offset);

-- The example consumer `python -m consumers.mirror`: its copy of every pair's current status, from the topics.
CREATE TABLE stock_status_mirror (
    product_id   bigint       NOT NULL,
    warehouse_id bigint       NOT NULL,
    status       stock_status NOT NULL,
    seq          bigint       NOT NULL,
    quantity     bigint       NOT NULL,
    changed_at   timestamptz  NOT NULL,
    event_id     uuid,
    mirrored_at  timestamptz  NOT NULL DEFAULT now(),
    PRIMARY KEY (product_id, warehouse_id)
);
