-- Queries of the bridge (bridge/relay.py). The outbox is read in id order and deleted once published; never
-- read with "id > last seen": ids are not committed in order, a late commit with a smaller id would be skipped.

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
  LEFT JOIN LATERAL status_change_batch($1, $2) o ON true;

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
