-- The API's queries. Lists are keyset-paginated: each page starts after the last key of the previous one, so
-- the thousandth page costs what the first does. Balances are keyed by (product_id, warehouse_id).

-- name: balances
-- $1 after product, $2 after warehouse (the smallest bigints: from the start), $3 statuses or NULL, $4 rows
SELECT product_id, warehouse_id, quantity, status, updated_at
  FROM stock_balance
 WHERE (product_id, warehouse_id) > ($1, $2)
   AND ($3::stock_status[] IS NULL OR status = ANY ($3))
 ORDER BY product_id, warehouse_id
 LIMIT $4;

-- name: balances_of_product
-- $1 product, $2 after warehouse, $3 statuses or NULL, $4 warehouse or NULL, $5 rows
SELECT product_id, warehouse_id, quantity, status, updated_at
  FROM stock_balance
 WHERE product_id = $1 AND warehouse_id > $2
   AND ($3::stock_status[] IS NULL OR status = ANY ($3))
   AND ($4::bigint IS NULL OR warehouse_id = $4)
 ORDER BY warehouse_id
 LIMIT $5;

-- name: balances_at_warehouse
-- $1 warehouse, $2 after product, $3 statuses or NULL, $4 rows
SELECT product_id, warehouse_id, quantity, status, updated_at
  FROM stock_balance
 WHERE warehouse_id = $1 AND product_id > $2
   AND ($3::stock_status[] IS NULL OR status = ANY ($3))
 ORDER BY product_id
 LIMIT $4;

-- name: balance
-- One pair, with whether its product and warehouse exist; a pair never stocked has no balance row.
SELECT p.id IS NOT NULL AS product_known, w.id IS NOT NULL AS warehouse_known,
       b.quantity, b.status, b.updated_at
  FROM (SELECT $1::bigint AS product_id, $2::bigint AS warehouse_id) k
  LEFT JOIN products p ON p.id = k.product_id
  LEFT JOIN warehouses w ON w.id = k.warehouse_id
  LEFT JOIN stock_balance b ON b.product_id = k.product_id AND b.warehouse_id = k.warehouse_id;

-- name: product_exists
SELECT EXISTS (SELECT 1 FROM products WHERE id = $1);

-- name: warehouse_exists
SELECT EXISTS (SELECT 1 FROM warehouses WHERE id = $1);

-- name: status_change_count
SELECT status_change_count();

-- name: record_operation
-- $1 product, $2 warehouse, $3 signed quantity, $4 type. The triggers apply it to the balance.
INSERT INTO warehouse_operations (product_id, warehouse_id, quantity, operation_type, api_key_id)
VALUES ($1, $2, $3, $4, acting_api_key())
RETURNING id, created_at;

-- name: transfer
SELECT transfer_stock($1, $2, $3, $4) AS transfer_id;

-- name: balance_after_write
-- Inside the writing transaction, which holds the row's lock: the balance as the write left it.
SELECT product_id, warehouse_id, quantity, status, previous_status, updated_at
  FROM stock_balance
 WHERE product_id = $1 AND warehouse_id = $2;

-- name: act_as
-- For the rest of the transaction, the operations it writes record this key as their actor ($1 name, $2 id).
SELECT set_config('warehouse.actor', $1, true), set_config('warehouse.api_key_id', $2, true);

-- name: balances_after_write
-- Inside the writing transaction: the balances of the pairs ($1 products, $2 warehouses) as it left them.
SELECT b.product_id, b.warehouse_id, b.quantity, b.status, b.previous_status, b.updated_at
  FROM unnest($1::bigint[], $2::bigint[]) AS k (product_id, warehouse_id)
  JOIN stock_balance b USING (product_id, warehouse_id)
 ORDER BY b.product_id, b.warehouse_id;

-- name: create_document
-- $1 reference or NULL, $2 lines; its actor is the transaction's (act_as)
INSERT INTO documents (reference, lines, actor, api_key_id)
VALUES ($1, $2, current_setting('warehouse.actor'), acting_api_key())
RETURNING id, created_at;

-- name: document_lines
-- A document's operations, in line order, as one statement (the triggers' set-based path: all or nothing). The
-- ids come back in no particular order; sorted, they are in line order (drawn as the rows are inserted).
INSERT INTO warehouse_operations (product_id, warehouse_id, quantity, operation_type, transfer_id, document_id,
                                  api_key_id)
SELECT l.p, l.w, l.q, l.t, l.x, $6, acting_api_key()
  FROM unnest($1::bigint[], $2::bigint[], $3::integer[], $4::operation_type[], $5::uuid[])
       WITH ORDINALITY AS l (p, w, q, t, x, n)
 ORDER BY l.n
RETURNING id;

-- name: count_stock
SELECT line, product_id, warehouse_id, counted, stored, operation_id FROM count_stock($1, $2, $3);

-- name: claim_idempotency_key
-- Waits for a concurrent claim of the same key; returns a row only if this transaction made the claim.
INSERT INTO idempotent_requests (api_key_id, idempotency_key, request_hash)
VALUES ($1, $2, $3)
ON CONFLICT DO NOTHING
RETURNING true AS claimed;

-- name: idempotent_response
SELECT request_hash, response_body
  FROM idempotent_requests
 WHERE api_key_id = $1 AND idempotency_key = $2;

-- name: store_idempotent_response
UPDATE idempotent_requests
   SET response_body = $3
 WHERE api_key_id = $1 AND idempotency_key = $2;

-- name: outbox_backlog
-- For the metrics, every 5 s: what waits for the bridge, read by the API so that it is known while no bridge runs.
SELECT count(*) AS events, coalesce(extract(epoch FROM now() - min(occurred_at)), 0)::float8 AS oldest_age_s
  FROM status_change_outbox;

-- name: forget_idempotency_keys
-- $1 hours to keep; returns how many were forgotten
WITH forgotten AS (
    DELETE FROM idempotent_requests WHERE created_at < now() - make_interval(hours => $1) RETURNING 1
)
SELECT count(*) FROM forgotten;

-- name: create_product
-- $1 id or NULL (the next free one)
INSERT INTO products (id, name, low_stock_threshold) VALUES (coalesce($1, nextval(pg_get_serial_sequence('products', 'id'))), $2, $3)
RETURNING id, name, low_stock_threshold, created_at;

-- name: product
SELECT id, name, low_stock_threshold, created_at FROM products WHERE id = $1;

-- name: products
-- $1 after id, $2 rows, $3 a LIKE pattern for the name (case ignored) or NULL
SELECT id, name, low_stock_threshold, created_at FROM products
 WHERE id > $1 AND ($3::text IS NULL OR name ILIKE $3)
 ORDER BY id LIMIT $2;

-- name: update_product
-- $2 name or NULL, $3 threshold or NULL (NULL: unchanged). A new threshold re-evaluates the product's statuses
-- (trigger reevaluate_statuses).
UPDATE products
   SET name = coalesce($2, name), low_stock_threshold = coalesce($3, low_stock_threshold)
 WHERE id = $1
RETURNING id, name, low_stock_threshold, created_at;

-- name: create_warehouse
-- $1 id or NULL (the next free one)
INSERT INTO warehouses (id, name) VALUES (coalesce($1, nextval(pg_get_serial_sequence('warehouses', 'id'))), $2)
RETURNING id, name, created_at;

-- name: warehouse
SELECT id, name, created_at FROM warehouses WHERE id = $1;

-- name: warehouses
-- $1 after id, $2 rows
SELECT id, name, created_at FROM warehouses WHERE id > $1 ORDER BY id LIMIT $2;

-- name: create_api_key
-- $5 the warehouses it may write at, or NULL: all
INSERT INTO api_keys (name, role, key_hash, key_prefix, warehouses) VALUES ($1, $2, $3, $4, $5)
RETURNING id, name, role, key_prefix, warehouses, created_at, revoked_at;

-- name: unknown_warehouses
-- Of the ids $1, those no warehouse has.
SELECT array_agg(k.id ORDER BY k.id) FROM unnest($1::bigint[]) AS k (id)
 WHERE NOT EXISTS (SELECT 1 FROM warehouses w WHERE w.id = k.id);

-- name: api_key_by_hash
SELECT id, name, role, warehouses FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL;

-- name: active_api_keys
-- Of the keys $1 (ids), those still active.
SELECT id FROM api_keys WHERE id = ANY($1::bigint[]) AND revoked_at IS NULL;

-- name: api_keys
SELECT id, name, role, key_prefix, warehouses, created_at, revoked_at FROM api_keys ORDER BY id;

-- name: lock_api_keys
-- Revocations one at a time, so two admins revoking each other cannot leave no admin.
LOCK TABLE api_keys IN SHARE ROW EXCLUSIVE MODE;

-- name: api_key
SELECT id, name, role, key_prefix, warehouses, created_at, revoked_at FROM api_keys WHERE id = $1;

-- name: active_admin_keys
SELECT count(*) FROM api_keys WHERE role = 'admin' AND revoked_at IS NULL;

-- name: revoke_api_key
UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL;

-- name: migrations_table_exists
SELECT to_regclass('schema_migrations') IS NOT NULL;

-- name: migrated_to
-- Whether the database has migration $1 (the newest this code knows), i.e. the schema the API expects.
SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1);

-- History: the stored event log, newest first. $1, $2: after (occurred_at, event_id) of the previous page's last
-- row ('infinity' and the greatest uuid: from the newest); $3, $4: since and until ('-infinity', 'infinity':
-- unbounded); then the filter and the rows.

-- name: status_changes
SELECT event_id, occurred_at, product_id, warehouse_id, old_status, new_status, quantity, operation_id
  FROM status_change_log
 WHERE (occurred_at, event_id) < ($1, $2) AND occurred_at >= $3 AND occurred_at < $4
 ORDER BY occurred_at DESC, event_id DESC
 LIMIT $5;

-- name: status_changes_of_product
-- $5 product, $6 warehouse or NULL, $7 rows
SELECT event_id, occurred_at, product_id, warehouse_id, old_status, new_status, quantity, operation_id
  FROM status_change_log
 WHERE product_id = $5 AND ($6::bigint IS NULL OR warehouse_id = $6)
   AND (occurred_at, event_id) < ($1, $2) AND occurred_at >= $3 AND occurred_at < $4
 ORDER BY occurred_at DESC, event_id DESC
 LIMIT $7;

-- name: status_changes_at_warehouse
-- $5 warehouse, $6 rows
SELECT event_id, occurred_at, product_id, warehouse_id, old_status, new_status, quantity, operation_id
  FROM status_change_log
 WHERE warehouse_id = $5
   AND (occurred_at, event_id) < ($1, $2) AND occurred_at >= $3 AND occurred_at < $4
 ORDER BY occurred_at DESC, event_id DESC
 LIMIT $6;

-- name: status_totals
-- How many balances have each status (a scan of stock_balance: for the dashboard, refreshed every few seconds).
SELECT status, count(*) AS balances FROM stock_balance GROUP BY status;

-- name: status_changes_per_minute
-- Stored status changes per minute over the last $1 minutes, this minute included, oldest first, zeros too.
SELECT m AS minute, count(l.event_id) AS changes
  FROM generate_series(date_trunc('minute', now()) - make_interval(mins => $1 - 1), date_trunc('minute', now()),
                       interval '1 minute') m
  LEFT JOIN status_change_log l ON l.occurred_at >= m AND l.occurred_at < m + interval '1 minute'
 GROUP BY m
 ORDER BY m;

-- The ledger: GET /operations. $1, $2: after (created_at, id) of the previous page's last row; $3 rows; the
-- route puts its filters' conditions (on $4…) where the comment is.

-- name: operations
SELECT o.id AS operation_id, o.operation_type::text, o.product_id, o.warehouse_id, o.quantity AS change,
       o.transfer_id, o.document_id, o.actor, o.api_key_id, o.created_at
  FROM warehouse_operations o
 WHERE (o.created_at, o.id) < ($1, $2) /* filters */
 ORDER BY o.created_at DESC, o.id DESC
 LIMIT $3;

-- name: document_time
SELECT created_at FROM documents WHERE id = $1;

-- name: operation
SELECT o.id AS operation_id, o.operation_type::text, o.product_id, o.warehouse_id, o.quantity AS change,
       o.transfer_id, o.document_id, o.actor, o.api_key_id, o.created_at
  FROM warehouse_operations o
 WHERE o.id = $1;

-- name: transfer_legs
SELECT o.id AS operation_id, o.operation_type::text, o.product_id, o.warehouse_id, o.quantity AS change,
       o.transfer_id, o.document_id, o.actor, o.api_key_id, o.created_at
  FROM warehouse_operations o
 WHERE o.transfer_id = $1
 ORDER BY o.id;

-- Reports. $1, $2: the period [since, until); $3 product or NULL, $4 warehouse or NULL. Movements: units per kind
-- in the period (shipments and transfers out as positive units), from the ledger (its created_at index).

-- name: movements
-- $5: what a row totals, 'warehouse', 'product' or 'day' (UTC); the other two keys are NULL. Summed first, named
-- after (one lookup per row of the report, not per operation).
WITH sums AS (
    SELECT CASE WHEN $5::text = 'warehouse' THEN o.warehouse_id END AS warehouse_id,
           CASE WHEN $5::text = 'product' THEN o.product_id END AS product_id,
           CASE WHEN $5::text = 'day' THEN (o.created_at AT TIME ZONE 'UTC')::date END AS day,
           coalesce(sum(o.quantity) FILTER (WHERE o.operation_type = 'receipt'), 0) AS receipts,
           coalesce(-sum(o.quantity) FILTER (WHERE o.operation_type = 'shipment'), 0) AS shipments,
           coalesce(sum(o.quantity) FILTER (WHERE o.operation_type = 'transfer_in'), 0) AS transfers_in,
           coalesce(-sum(o.quantity) FILTER (WHERE o.operation_type = 'transfer_out'), 0) AS transfers_out,
           coalesce(sum(o.quantity) FILTER (WHERE o.operation_type = 'adjustment'), 0) AS adjustments,
           sum(o.quantity) AS net
      FROM warehouse_operations o
     WHERE o.created_at >= $1 AND o.created_at < $2
       AND ($3::bigint IS NULL OR o.product_id = $3) AND ($4::bigint IS NULL OR o.warehouse_id = $4)
     GROUP BY 1, 2, 3
)
SELECT s.warehouse_id, s.product_id, s.day, coalesce(w.name, p.name) AS name, s.receipts, s.shipments,
       s.transfers_in, s.transfers_out, s.adjustments, s.net
  FROM sums s
  LEFT JOIN warehouses w ON w.id = s.warehouse_id
  LEFT JOIN products p ON p.id = s.product_id
 ORDER BY s.warehouse_id, s.product_id, s.day;

-- name: stock_outs
-- Each pair's stored status changes up to $2, in the order they happened; each holds its new status until the
-- next (or now); those spans, cut to [$1, $2), summed per status. $5 pairs, longest out of stock first.
WITH changes AS (
    SELECT l.product_id, l.warehouse_id, l.occurred_at, l.new_status,
           lead(l.occurred_at) OVER (PARTITION BY l.product_id, l.warehouse_id
                                     ORDER BY l.occurred_at, l.seq NULLS FIRST, l.kafka_partition, l.kafka_offset)
               AS next_at
      FROM status_change_log l
     WHERE l.occurred_at < $2
       AND ($3::bigint IS NULL OR l.product_id = $3) AND ($4::bigint IS NULL OR l.warehouse_id = $4)
),
spans AS (
    SELECT product_id, warehouse_id, new_status, occurred_at >= $1 AS in_period,
           extract(epoch FROM least(coalesce(next_at, $2), $2, now()) - greatest(occurred_at, $1))::float8 AS seconds
      FROM changes
     WHERE least(coalesce(next_at, $2), $2, now()) > $1
)
SELECT s.product_id, p.name AS product_name, s.warehouse_id, w.name AS warehouse_name,
       coalesce(sum(s.seconds) FILTER (WHERE s.new_status = 'out_of_stock'), 0) AS out_of_stock_seconds,
       coalesce(sum(s.seconds) FILTER (WHERE s.new_status = 'running_low'), 0) AS running_low_seconds,
       count(*) FILTER (WHERE s.in_period) AS changes
  FROM spans s
  JOIN products p ON p.id = s.product_id
  JOIN warehouses w ON w.id = s.warehouse_id
 GROUP BY s.product_id, p.name, s.warehouse_id, w.name
HAVING sum(s.seconds) FILTER (WHERE s.new_status <> 'available') > 0
 ORDER BY out_of_stock_seconds DESC, running_low_seconds DESC, s.product_id, s.warehouse_id
 LIMIT $5;
