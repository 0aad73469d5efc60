-- Queries of the bridge (bridge/relay.py). The outbox is read in id order and deleted once published; never
-- read with "id > last seen" alone: ids are not committed in order, a late commit with a smaller id would be
-- skipped (next_batch_after reads past a batch in flight only with the count that detects one).

-- name: take_leadership
-- Session-level: held for as long as the leader's control connection lives.
SELECT pg_try_advisory_lock(hashtextextended($1, 0));

-- name: next_batch
SELECT * FROM status_change_batch(0, $1);

-- name: next_batch_after
-- The batch after one that is still being published (ids up to $1, not deleted yet), read while that one is
-- in its Kafka transaction. `behind` counts the rows with ids up to $1 in the same snapshot: more than that
-- batch held means a transaction with smaller ids committed late; its rows must go out before any later row of
-- their pair, so the caller discards this batch and reads from the start once the deletion is done. Without
-- rows after $1, one row of NULLs still carries `behind`.
SELECT b.behind, o.*
  FROM (SELECT count(*) AS behind FROM status_change_outbox WHERE id <= $1) b
  LEFT JOIN LATERAL status_change_batch($1, $2) o ON true
 ORDER BY o.id;

-- name: delete_published
-- The deletion counts the rows into status_change_counter (trigger count_removed_changes).
DELETE FROM status_change_outbox WHERE id = ANY($1::bigint[]);

-- name: delete_recovered
-- The rows of the last committed batch, as its state record names them: by id and event id both, so rows that
-- merely reuse an id (a database restored under a surviving state topic) are left alone.
DELETE FROM status_change_outbox WHERE id = ANY($1::bigint[]) AND event_id = ANY($2::uuid[]);

-- name: start_listening
-- "Listening" (see notify_status_change in the migrations): taken exclusively, it waits for the writers that
-- skipped their wake-up because no bridge was listening; from then on every writer of a change notifies.
SELECT pg_advisory_lock(7735218433629061301);

-- name: stop_listening
SELECT pg_advisory_unlock(7735218433629061301);

-- name: backlog
-- For the metrics: counts the whole outbox, so the bridge runs it at most once a second.
SELECT count(*) AS events, coalesce(extract(epoch FROM now() - min(occurred_at)), 0)::float8 AS oldest_age_s,
       pg_notification_queue_usage() AS queue_usage
  FROM status_change_outbox;

-- name: snapshot_pending
-- A snapshot requested of this deployment (`python -m bridge snapshot`) and not finished: where it is.
SELECT after_product, after_warehouse, written, requested_at FROM state_snapshots
 WHERE transactional_id = $1 AND finished_at IS NULL;

-- name: snapshot_chunk
-- The next $3 pairs after ($1, $2) in key order, each with its current-state record as published: its last
-- published change (status_change_published), or, for a pair with none, seq 0 and its balance (left out while
-- it has changes waiting in the outbox: their records will say more than a seq 0 could). The bridge runs it with
-- nothing in flight, so what it reads is what the topic last got for each pair.
SELECT b.product_id || ':' || b.warehouse_id AS key,
       '{"product_id":' || b.product_id
           || ',"warehouse_id":' || b.warehouse_id
           || ',"status":"' || coalesce(p.status, b.status)
           || '","seq":' || coalesce(p.seq, 0)
           || ',"quantity":' || coalesce(p.quantity, b.quantity)
           || ',"changed_at":"' || event_time(coalesce(p.changed_at, status_change_time(b.status, b.previous_status,
                                                                     b.updated_at, b.prior_change_at)), 'Z')
           || '","event_id":' || coalesce('"' || p.event_id || '"', 'null')
           || '}' AS value,
       b.product_id, b.warehouse_id
  FROM stock_balance b
  LEFT JOIN status_change_published p USING (product_id, warehouse_id)
  LEFT JOIN (SELECT DISTINCT product_id, warehouse_id, true AS waiting FROM status_change_outbox) w
         USING (product_id, warehouse_id)
 WHERE (b.product_id, b.warehouse_id) > ($1, $2)
   AND (p.seq IS NOT NULL OR w.waiting IS NULL)
 ORDER BY b.product_id, b.warehouse_id
 LIMIT $3;

-- name: snapshot_progress
-- After a chunk's Kafka commit. $5: the chunk was the last. $6: the request it belongs to (a request made again
-- meanwhile starts over, and this chunk's progress is not its).
UPDATE state_snapshots
   SET after_product = $2, after_warehouse = $3, written = written + $4,
       finished_at = CASE WHEN $5 THEN now() END
 WHERE transactional_id = $1 AND finished_at IS NULL AND requested_at = $6;

-- name: request_snapshot
-- A new snapshot from the first pair (one replaces an unfinished one: it starts over, which is safe).
INSERT INTO state_snapshots (transactional_id, pairs)
VALUES ($1, (SELECT count(*) FROM stock_balance))
ON CONFLICT (transactional_id) DO UPDATE
   SET requested_at = now(), pairs = excluded.pairs, written = 0, after_product = NULL, after_warehouse = NULL,
       finished_at = NULL
RETURNING pairs;

-- name: snapshot_state
SELECT pairs, written, finished_at, extract(epoch FROM coalesce(finished_at, now()) - requested_at)::float8 AS took_s
  FROM state_snapshots WHERE transactional_id = $1;

-- name: leader_present
-- Whether some session holds the leadership lock of this transactional id (take_leadership's key).
SELECT EXISTS (
    SELECT 1 FROM pg_locks
     WHERE locktype = 'advisory' AND objsubid = 1 AND granted
       AND ((classid::bigint << 32) | objid::bigint) = hashtextextended($1, 0));

-- name: republish_chunk
-- `python -m bridge republish`: the stored events after the position ($1..$5) in key order, each pair's in the
-- order they happened (version 1 rows, without seq, first, by where they were read).
SELECT event_id, occurred_at, product_id, warehouse_id, old_status::text, new_status::text, quantity, operation_id,
       seq, cause, transfer_id, coalesce(seq, 0) AS position_seq, kafka_partition, kafka_offset
  FROM status_change_log
 WHERE (product_id, warehouse_id, coalesce(seq, 0), kafka_partition, kafka_offset) > ($1, $2, $3, $4, $5)
 ORDER BY product_id, warehouse_id, coalesce(seq, 0), kafka_partition, kafka_offset
 LIMIT $6;

-- name: republish_total
SELECT count(*) FROM status_change_log;
