-- name: store_events
-- One batch of events; an event already stored (a redelivery) is left as it is.
INSERT INTO status_change_log (event_id, occurred_at, product_id, warehouse_id, old_status, new_status, quantity,
                               operation_id, kafka_partition, kafka_offset, seq, cause, transfer_id)
SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::bigint[], $4::bigint[], $5::stock_status[],
                     $6::stock_status[], $7::bigint[], $8::bigint[], $9::integer[], $10::bigint[], $11::bigint[],
                     $12::text[], $13::uuid[])
ON CONFLICT (event_id) DO NOTHING;

-- name: mirror_upsert
-- consumers.mirror: pairs' states, each kept only when newer (by seq) than the copy's, so applying a state or a
-- change twice, or an older one after a newer, changes nothing.
INSERT INTO stock_status_mirror AS m (product_id, warehouse_id, status, seq, quantity, changed_at, event_id)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::stock_status[], $4::bigint[], $5::bigint[],
                     $6::timestamptz[], $7::uuid[])
ON CONFLICT (product_id, warehouse_id) DO UPDATE
   SET status = excluded.status, seq = excluded.seq, quantity = excluded.quantity, changed_at = excluded.changed_at,
       event_id = excluded.event_id, mirrored_at = now()
 WHERE m.seq < excluded.seq;
