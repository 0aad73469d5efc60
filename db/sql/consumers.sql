-- name: store_events
-- One batch of events; an event already stored (a redelivery) is left as it is.
INSERT INTO status_change_log (event_id, occurred_at, product_id, warehouse_id, old_status, new_status, quantity,
                               operation_id, kafka_partition, kafka_offset, seq, cause, transfer_id)
SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::bigint[], $4::bigint[], $5::stock_status[],
                     $6::stock_status[], $7::bigint[], $8::bigint[], $9::integer[], $10::bigint[], $11::bigint[],
                     $12::text[], $13::uuid[])
ON CONFLICT (event_id) DO NOTHING;
