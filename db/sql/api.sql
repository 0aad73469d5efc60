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
INSERT INTO warehouse_operations (product_id, warehouse_id, quantity, operation_type)
VALUES ($1, $2, $3, $4)
RETURNING id, created_at;

-- name: transfer
SELECT transfer_stock($1, $2, $3, $4) AS transfer_id;

-- name: balance_after_write
-- Inside the writing transaction, which holds the row's lock: the balance as the write left it.
SELECT product_id, warehouse_id, quantity, status, previous_status, updated_at
  FROM stock_balance
 WHERE product_id = $1 AND warehouse_id = $2;

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

-- name: forget_idempotency_keys
-- $1 hours to keep; returns how many were forgotten
WITH forgotten AS (
    DELETE FROM idempotent_requests WHERE created_at < now() - make_interval(hours => $1) RETURNING 1
)
SELECT count(*) FROM forgotten;

-- name: create_product
INSERT INTO products (name, low_stock_threshold) VALUES ($1, $2)
RETURNING id, name, low_stock_threshold, created_at;

-- name: product
SELECT id, name, low_stock_threshold, created_at FROM products WHERE id = $1;

-- name: products
-- $1 after id, $2 rows
SELECT id, name, low_stock_threshold, created_at FROM products WHERE id > $1 ORDER BY id LIMIT $2;

-- name: update_product
-- $2 name or NULL, $3 threshold or NULL (NULL: unchanged). A new threshold re-evaluates the product's statuses
-- (trigger reevaluate_statuses).
UPDATE products
   SET name = coalesce($2, name), low_stock_threshold = coalesce($3, low_stock_threshold)
 WHERE id = $1
RETURNING id, name, low_stock_threshold, created_at;

-- name: create_warehouse
INSERT INTO warehouses (name) VALUES ($1) RETURNING id, name, created_at;

-- name: warehouse
SELECT id, name, created_at FROM warehouses WHERE id = $1;

-- name: warehouses
-- $1 after id, $2 rows
SELECT id, name, created_at FROM warehouses WHERE id > $1 ORDER BY id LIMIT $2;

-- name: create_api_key
INSERT INTO api_keys (name, role, key_hash, key_prefix) VALUES ($1, $2, $3, $4)
RETURNING id, name, role, key_prefix, created_at, revoked_at;

-- name: api_key_by_hash
SELECT id, name, role FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL;

-- name: active_api_keys
-- Of the keys $1 (ids), those still active.
SELECT id FROM api_keys WHERE id = ANY($1::bigint[]) AND revoked_at IS NULL;

-- name: api_keys
SELECT id, name, role, key_prefix, created_at, revoked_at FROM api_keys ORDER BY id;

-- name: lock_api_keys
-- Revocations one at a time, so two admins revoking each other cannot leave no admin.
LOCK TABLE api_keys IN SHARE ROW EXCLUSIVE MODE;

-- name: api_key
SELECT id, name, role, key_prefix, created_at, revoked_at FROM api_keys WHERE id = $1;

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
