-- The outbox as the bridge publishes it: each row's Kafka key, its JSON value and its CloudEvents time, made
-- here so the bridge only moves bytes (serialising in Python cost the bridge about half its CPU).
-- The value is exactly what bridge/events.py's StatusChanged model serialises to (field order, compact
-- separators, times in UTC with microseconds only when there are any, "Z" in the value and "+00:00" in
-- ce_time): a test compares the two for every kind of row, and fails when either changes alone.
CREATE FUNCTION event_time(at timestamptz, utc_suffix text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
           || CASE WHEN to_char(at AT TIME ZONE 'UTC', 'US') = '000000' THEN ''
                   ELSE '.' || to_char(at AT TIME ZONE 'UTC', 'US') END
           || utc_suffix
$$;

CREATE VIEW status_change_events AS
    SELECT id,
           product_id || ':' || warehouse_id AS key,
           '{"event_id":"' || event_id
               || '","schema_version":1,"occurred_at":"' || event_time(occurred_at, 'Z')
               || '","product_id":' || product_id
               || ',"warehouse_id":' || warehouse_id
               || ',"old_status":"' || old_status
               || '","new_status":"' || new_status
               || '","quantity":' || quantity
               || ',"operation_id":' || coalesce(operation_id::text, 'null')
               || '}' AS value,
           event_id::text AS ce_id,
           event_time(occurred_at, '+00:00') AS ce_time,
           extract(epoch FROM occurred_at)::float8 AS occurred_epoch
      FROM status_change_outbox;
