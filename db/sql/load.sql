-- name: ensure_products
-- Products 1..$1 (missing ones only); the id sequence moves past them so later inserts without an id work.
WITH added AS (
    INSERT INTO products (id, name)
    SELECT g, 'product ' || g FROM generate_series(1, $1::bigint) AS g
    ON CONFLICT (id) DO NOTHING
    RETURNING id
)
SELECT setval(pg_get_serial_sequence('products', 'id'), greatest(
    $1::bigint,
    (SELECT max(id) FROM products),
    coalesce(pg_sequence_last_value(pg_get_serial_sequence('products', 'id')::regclass), 1)
)) FROM (SELECT count(*) FROM added) AS done;

-- name: ensure_warehouses
WITH added AS (
    INSERT INTO warehouses (id, name)
    SELECT g, 'warehouse ' || g FROM generate_series(1, $1::bigint) AS g
    ON CONFLICT (id) DO NOTHING
    RETURNING id
)
SELECT setval(pg_get_serial_sequence('warehouses', 'id'), greatest(
    $1::bigint,
    (SELECT max(id) FROM warehouses),
    coalesce(pg_sequence_last_value(pg_get_serial_sequence('warehouses', 'id')::regclass), 1)
)) FROM (SELECT count(*) FROM added) AS done;

-- name: status_change_count
SELECT status_change_count();
