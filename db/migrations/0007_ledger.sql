-- The ledger and its people: who made each operation, multi-line documents, inventory counts as one statement,
-- the indexes that read the ledger, and identity columns that stay ahead of explicit ids.

-- Explicit ids (`INSERT INTO products (id, name) …`, as a team bringing its own numbering does) leave an identity
-- sequence behind, and the next insert without an id would collide. Each statement that inserts rows moves the
-- sequence past its largest id. Two sessions racing here can still leave it one step behind; the API retries an
-- id it drew that turns out taken.
CREATE FUNCTION keep_identity_ahead() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    sequence regclass := pg_get_serial_sequence(TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, 'id')::regclass;
    highest bigint;
BEGIN
    SELECT max(id) INTO highest FROM new_rows;
    IF highest > coalesce(pg_sequence_last_value(sequence), 0) THEN
        PERFORM setval(sequence, highest);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER keep_identity_ahead
    AFTER INSERT ON products
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION keep_identity_ahead();

CREATE TRIGGER keep_identity_ahead
    AFTER INSERT ON warehouses
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION keep_identity_ahead();

-- Rows inserted with explicit ids before this migration.
SELECT setval(pg_get_serial_sequence('products', 'id'), max(id)) FROM products
HAVING max(id) > coalesce(pg_sequence_last_value(pg_get_serial_sequence('products', 'id')::regclass), 0);
SELECT setval(pg_get_serial_sequence('warehouses', 'id'), max(id)) FROM warehouses
HAVING max(id) > coalesce(pg_sequence_last_value(pg_get_serial_sequence('warehouses', 'id')::regclass), 0);

-- A key may be limited to some warehouses (a store's staff): its writes touching any other are refused (the API's
-- write routes check it; a transfer touches two). NULL: every warehouse. Only operator keys write stock, so only
-- they are limited.
ALTER TABLE api_keys ADD COLUMN warehouses bigint[]
    CHECK (warehouses IS NULL OR (cardinality(warehouses) > 0 AND role = 'operator'));

-- A document: many lines (a delivery note, a picking list) applied as one statement, all or nothing.
CREATE TABLE documents (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    reference  text        CHECK (reference <> ''),  -- the caller's own number (a delivery note's), if any
    actor      text        NOT NULL,
    api_key_id bigint,
    lines      integer     NOT NULL CHECK (lines > 0),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Who made an operation: an SQL writer says who it is with `SET warehouse.actor = 'night import'` (for a session,
-- or SET LOCAL for a transaction), else its role is recorded; the API sets the key's name so (and its id in
-- warehouse.api_key_id, which the API's inserts, transfer_stock and count_stock write into api_key_id: not a
-- default, so a bulk COPY looks up one setting a row, not two). NULL: written before this migration.
ALTER TABLE warehouse_operations
    ADD COLUMN actor text,
    ADD COLUMN api_key_id bigint,
    ADD COLUMN document_id bigint;
ALTER TABLE warehouse_operations
    ALTER COLUMN actor SET DEFAULT coalesce(nullif(current_setting('warehouse.actor', true), ''), current_user::text);

-- The API key writing in this transaction (the API's act_as), or NULL.
CREATE FUNCTION acting_api_key() RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT nullif(current_setting('warehouse.api_key_id', true), '')::bigint
$$;

-- Reading the ledger newest first (GET /operations: by created_at, then id). One index gives every row in that
-- order; it grows at its right edge only, so a bulk COPY barely pays for it. A filter without an index of its own
-- reads down it and skips the rows that do not match: quick for common values (a warehouse, an operation type),
-- slow for a rare one on a large ledger (one pair of 20,000). An index on the pair, which would make that quick,
-- costs every COPY 10-15 % (docs/benchmarks.md, "The ledger"): it is left to deployments that read more than they
-- load (docs/operations.md, "Reading the ledger"). A document's operations need none: they share its created_at
-- (one transaction), which bounds the scan. Transfers have a partial index (a COPY of receipts and shipments
-- writes nothing to it, but still checks its predicate: ≈ 6k CPU instructions a row, as does each partial index).
CREATE INDEX warehouse_operations_created ON warehouse_operations (created_at, id);
CREATE INDEX warehouse_operations_transfer ON warehouse_operations (transfer_id) WHERE transfer_id IS NOT NULL;

-- A transfer, as before, with the API key writing it.
CREATE OR REPLACE FUNCTION transfer_stock(product bigint, from_warehouse bigint, to_warehouse bigint, amount integer)
RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    transfer uuid := gen_random_uuid();
    leg record;
BEGIN
    IF product IS NULL OR from_warehouse IS NULL OR to_warehouse IS NULL THEN
        RAISE EXCEPTION 'invalid operation: a transfer needs a product and two warehouses, got product %, from %, to %',
            product, from_warehouse, to_warehouse USING ERRCODE = 'WH004';
    END IF;
    IF amount IS NULL OR amount <= 0 THEN
        RAISE EXCEPTION 'invalid operation: a transfer moves a positive quantity, got %', amount
            USING ERRCODE = 'WH004';
    END IF;
    IF from_warehouse = to_warehouse THEN
        RAISE EXCEPTION 'invalid operation: a transfer needs two different warehouses, got % twice', from_warehouse
            USING ERRCODE = 'WH004';
    END IF;
    PERFORM raise_unknown_references(ARRAY[product, product], ARRAY[from_warehouse, to_warehouse]);
    -- One leg per statement, so each takes the one-row path; in warehouse order, the order in which any
    -- statement locks balance rows, so transfers in opposite directions cannot deadlock (the leg with the
    -- lower warehouse id is also the lower operation id). Not enough stock at the source undoes both legs.
    FOR leg IN SELECT * FROM (VALUES (from_warehouse, -amount, 'transfer_out'::operation_type),
                                     (to_warehouse, amount, 'transfer_in'::operation_type))
                             AS l (warehouse, quantity, kind)
                ORDER BY warehouse LOOP
        INSERT INTO warehouse_operations (product_id, warehouse_id, quantity, operation_type, transfer_id, api_key_id)
        VALUES (product, leg.warehouse, leg.quantity, leg.kind, transfer, acting_api_key());
    END LOOP;
    RETURN transfer;
END
$$;

-- The failing row's place in its statement, in the DETAIL too (`row=N`), so a caller that inserted many rows
-- can name the line: a document's 409 does.
CREATE OR REPLACE FUNCTION raise_insufficient_stock(
    product_id bigint, warehouse_id bigint, available bigint, requested bigint,
    operation_type operation_type, row_number bigint
) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'insufficient stock: product % at warehouse % has %, the % in row % of the statement requests %',
        product_id, warehouse_id, available, operation_type, row_number, requested
        USING ERRCODE = 'WH001',
              DETAIL = format('product_id=%s warehouse_id=%s available=%s requested=%s row=%s',
                              product_id, warehouse_id, available, requested, row_number),
              HINT = 'nothing of the statement was applied';
END
$$;

-- Inventory counts of many pairs at once: each pair's difference between counted and stored is recorded as an
-- adjustment, computed under the pair's row lock (taken in key order, as every writer takes them), all in one
-- statement; a pair whose count matches gets no operation. One row per line, in line order. The pairs must be
-- distinct (the same pair twice in one count is a mistake the caller is told of).
CREATE FUNCTION count_stock(products bigint[], warehouses bigint[], counts bigint[])
RETURNS TABLE (line bigint, product_id bigint, warehouse_id bigint, counted bigint, stored bigint,
               operation_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    twice record;
BEGIN
    IF cardinality(products) IS DISTINCT FROM cardinality(warehouses)
       OR cardinality(products) IS DISTINCT FROM cardinality(counts) THEN
        RAISE EXCEPTION 'invalid operation: count_stock takes as many products, warehouses and counts'
            USING ERRCODE = 'WH004';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(counts) c WHERE c IS NULL OR c < 0) THEN
        RAISE EXCEPTION 'invalid operation: a counted quantity is 0 or more'
            USING ERRCODE = 'WH004';
    END IF;
    SELECT l.p, l.w INTO twice FROM unnest(products, warehouses) AS l (p, w) GROUP BY l.p, l.w
    HAVING count(*) > 1 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'invalid operation: product % at warehouse % is counted twice', twice.p, twice.w
            USING ERRCODE = 'WH004', DETAIL = format('product_id=%s warehouse_id=%s', twice.p, twice.w);
    END IF;
    PERFORM raise_unknown_references(products, warehouses);
    LOCK TABLE stock_balance IN ROW EXCLUSIVE MODE;  -- see the locking protocol of the stock core
    -- Pairs never stocked get their (empty) row first, so there is always a row to lock.
    INSERT INTO stock_balance (product_id, warehouse_id, low_stock_threshold)
    SELECT l.p, l.w, p.low_stock_threshold
      FROM unnest(products, warehouses) AS l (p, w) JOIN products p ON p.id = l.p
     ORDER BY l.p, l.w
    ON CONFLICT DO NOTHING;
    RETURN QUERY
    WITH lines AS (
        SELECT l.p, l.w, l.c, l.n FROM unnest(products, warehouses, counts) WITH ORDINALITY AS l (p, w, c, n)
    ),
    locked AS (
        SELECT b.product_id AS p, b.warehouse_id AS w, b.quantity
          FROM stock_balance b JOIN lines l ON (b.product_id, b.warehouse_id) = (l.p, l.w)
         ORDER BY b.product_id, b.warehouse_id
           FOR UPDATE OF b
    ),
    adjusted AS (
        INSERT INTO warehouse_operations (product_id, warehouse_id, quantity, operation_type, api_key_id)
        SELECT k.p, k.w, l.c - k.quantity, 'adjustment', acting_api_key()
          FROM locked k JOIN lines l USING (p, w)
         WHERE l.c <> k.quantity
         ORDER BY k.p, k.w
        RETURNING warehouse_operations.id, warehouse_operations.product_id AS p, warehouse_operations.warehouse_id AS w
    )
    SELECT l.n, l.p, l.w, l.c, k.quantity, a.id
      FROM lines l
      JOIN locked k USING (p, w)
      LEFT JOIN adjusted a USING (p, w)
     ORDER BY l.n;
END
$$;
