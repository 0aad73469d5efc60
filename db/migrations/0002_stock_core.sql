-- Stock core: the operations ledger, balances with their status, the status-change outbox and counter,
-- and the statement-level triggers that keep them exact under parallel writers (see README "Data rules").
--
-- Locking protocol (what keeps parallel loaders free of deadlocks):
--   * balance rows are locked in one global order, (product_id, warehouse_id), once per statement;
--   * a statement creating a new (product, warehouse) pair first takes FOR SHARE on the product row, so a
--     concurrent threshold change either sees the new pair or is seen by it;
--   * thresholds are read only after the balance rows are locked, in a later statement (fresh snapshot);
--   * the counter is append-only: no row is ever contended.

CREATE TYPE operation_type AS ENUM ('receipt', 'shipment', 'transfer_in', 'transfer_out', 'adjustment');
CREATE TYPE stock_status AS ENUM ('available', 'running_low', 'out_of_stock');

-- The rule: 0 -> out_of_stock, 1..threshold -> running_low, above -> available. Inlined by the planner.
CREATE FUNCTION stock_status_for(quantity bigint, threshold integer) RETURNS stock_status
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN quantity <= 0 THEN 'out_of_stock'
                WHEN quantity <= threshold THEN 'running_low'
                ELSE 'available' END::stock_status
$$;

-- The ledger: one row per movement, never updated or deleted. quantity is the signed change.
CREATE TABLE warehouse_operations (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    product_id     bigint         NOT NULL,
    warehouse_id   bigint         NOT NULL,
    quantity       integer        NOT NULL,
    operation_type operation_type NOT NULL,
    transfer_id    uuid,
    created_at     timestamptz    NOT NULL DEFAULT now(),
    CONSTRAINT quantity_sign_matches_type CHECK (CASE operation_type
        WHEN 'receipt' THEN quantity > 0
        WHEN 'transfer_in' THEN quantity > 0
        WHEN 'shipment' THEN quantity < 0
        WHEN 'transfer_out' THEN quantity < 0
        ELSE quantity <> 0 END),
    CONSTRAINT transfers_carry_transfer_id
        CHECK ((operation_type IN ('transfer_in', 'transfer_out')) = (transfer_id IS NOT NULL))
);
-- Product and warehouse are checked by the statement trigger (an FK here would cost a lookup per row);
-- stock_balance carries the foreign keys, one per (product, warehouse) pair.

-- Balance and status per pair, one row, so one lock and one write per pair and statement.
CREATE TABLE stock_balance (
    product_id        bigint       NOT NULL REFERENCES products (id),
    warehouse_id      bigint       NOT NULL REFERENCES warehouses (id),
    quantity          bigint       NOT NULL DEFAULT 0,
    status            stock_status NOT NULL DEFAULT 'out_of_stock',
    updated_at        timestamptz  NOT NULL DEFAULT now(),
    status_changed_at timestamptz  NOT NULL DEFAULT now(),
    PRIMARY KEY (product_id, warehouse_id)
) WITH (fillfactor = 80);  -- room for HOT updates: balances are rewritten all the time
CREATE INDEX stock_balance_warehouse ON stock_balance (warehouse_id, product_id);

-- The original system's status table, kept as a view of the same rows.
CREATE VIEW products_status AS
    SELECT product_id, warehouse_id, status, status_changed_at AS changed_at FROM stock_balance;

-- One row per status change, written in the operation's transaction; the bridge publishes and deletes them.
-- Per pair, id order is commit order: the trigger takes the id only after locking the pair's balance row.
CREATE TABLE status_change_outbox (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id     uuid         NOT NULL DEFAULT gen_random_uuid(),
    product_id   bigint       NOT NULL,
    warehouse_id bigint       NOT NULL,
    old_status   stock_status NOT NULL,
    new_status   stock_status NOT NULL,
    quantity     bigint       NOT NULL,
    operation_id bigint,  -- NULL when a threshold change caused it
    occurred_at  timestamptz  NOT NULL
);

-- The global count of status changes: append-only deltas (never a contended row), summed on read and
-- folded together now and then by compact_status_change_counter().
CREATE TABLE status_change_counter (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    changes     bigint      NOT NULL CHECK (changes >= 0),
    recorded_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO status_change_counter (changes) VALUES (0);

CREATE FUNCTION status_change_count() RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(changes), 0)::bigint FROM status_change_counter
$$;

CREATE FUNCTION compact_status_change_counter() RETURNS bigint
LANGUAGE sql AS $$
    WITH folded AS (DELETE FROM status_change_counter RETURNING changes)
    INSERT INTO status_change_counter (changes) SELECT coalesce(sum(changes), 0) FROM folded
    RETURNING changes
$$;

-- Errors callers can rely on: SQLSTATE and a stable message prefix.
--   WH001 insufficient stock: ...   WH002 unknown product: ...   WH003 unknown warehouse: ...
--   WH004 invalid operation: ...

-- When omitted, the type follows the sign. Runs only for rows without a type (WHEN clause).
CREATE FUNCTION default_operation_type() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.operation_type := CASE WHEN NEW.quantity > 0 THEN 'receipt' ELSE 'shipment' END;
    RETURN NEW;
END
$$;

CREATE TRIGGER default_operation_type
    BEFORE INSERT ON warehouse_operations
    FOR EACH ROW WHEN (NEW.operation_type IS NULL)
    EXECUTE FUNCTION default_operation_type();

CREATE FUNCTION operations_are_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'invalid operation: warehouse_operations is a ledger; % is not allowed, write a correcting operation instead', TG_OP
        USING ERRCODE = 'WH004';
END
$$;

CREATE TRIGGER operations_are_immutable
    BEFORE UPDATE OR DELETE OR TRUNCATE ON warehouse_operations
    FOR EACH STATEMENT EXECUTE FUNCTION operations_are_immutable();

-- Raise the clear error for an unknown product or warehouse among the given pairs, and take FOR SHARE on
-- the products of pairs that have no balance row yet (see the locking protocol above).
CREATE FUNCTION check_new_pairs(pair_products bigint[], pair_warehouses bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    missing_product bigint;
    missing_warehouse bigint;
BEGIN
    WITH pairs AS (
        SELECT DISTINCT k.product_id, k.warehouse_id
        FROM unnest(pair_products, pair_warehouses) AS k (product_id, warehouse_id)
        WHERE NOT EXISTS (SELECT 1 FROM stock_balance b
                          WHERE b.product_id = k.product_id AND b.warehouse_id = k.warehouse_id)
    ),
    locked AS (
        SELECT p.id FROM products p WHERE p.id IN (SELECT product_id FROM pairs)
        ORDER BY p.id FOR SHARE
    )
    SELECT (SELECT min(product_id) FROM pairs WHERE product_id NOT IN (SELECT id FROM locked)),
           (SELECT min(warehouse_id) FROM pairs
             WHERE NOT EXISTS (SELECT 1 FROM warehouses w WHERE w.id = pairs.warehouse_id))
      INTO missing_product, missing_warehouse;
    IF missing_product IS NOT NULL THEN
        RAISE EXCEPTION 'unknown product: % does not exist', missing_product
            USING ERRCODE = 'WH002', DETAIL = format('product_id=%s', missing_product);
    END IF;
    IF missing_warehouse IS NOT NULL THEN
        RAISE EXCEPTION 'unknown warehouse: % does not exist', missing_warehouse
            USING ERRCODE = 'WH003', DETAIL = format('warehouse_id=%s', missing_warehouse);
    END IF;
END
$$;

CREATE FUNCTION raise_insufficient_stock(
    product_id bigint, warehouse_id bigint, available bigint, requested bigint,
    operation_type operation_type, row_number bigint
) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'insufficient stock: product % at warehouse % has %, the % in row % of the statement requests %',
        product_id, warehouse_id, available, operation_type, row_number, requested
        USING ERRCODE = 'WH001',
              DETAIL = format('product_id=%s warehouse_id=%s available=%s requested=%s',
                              product_id, warehouse_id, available, requested),
              HINT = 'nothing of the statement was applied';
END
$$;

-- The heart: apply a statement's operations as if one by one in id order.
CREATE FUNCTION update_stock_and_status() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    n_ops bigint;
    op record;
    keys_p bigint[];
    keys_w bigint[];
    start_q bigint[];
    start_s stock_status[];
    bad record;
    v_q_after bigint;
    v_old_status stock_status;
    v_new_status stock_status;
BEGIN
    SELECT count(*) INTO n_ops FROM new_ops;
    IF n_ops = 0 THEN
        RETURN NULL;
    END IF;

    IF n_ops = 1 THEN
        -- Fast path for the API's one-row inserts: a few indexed single-row statements.
        SELECT * INTO op FROM new_ops;
        UPDATE stock_balance b SET quantity = b.quantity + op.quantity, updated_at = now()
         WHERE b.product_id = op.product_id AND b.warehouse_id = op.warehouse_id
        RETURNING b.quantity, b.status INTO v_q_after, v_old_status;
        IF NOT FOUND THEN
            PERFORM check_new_pairs(ARRAY[op.product_id], ARRAY[op.warehouse_id]);
            INSERT INTO stock_balance AS b (product_id, warehouse_id, quantity)
            VALUES (op.product_id, op.warehouse_id, op.quantity)
            ON CONFLICT (product_id, warehouse_id)
                DO UPDATE SET quantity = b.quantity + excluded.quantity, updated_at = now()
            RETURNING b.quantity, b.status INTO v_q_after, v_old_status;
        END IF;
        IF v_q_after < 0 THEN
            PERFORM raise_insufficient_stock(op.product_id, op.warehouse_id, v_q_after - op.quantity,
                                             -op.quantity, op.operation_type, 1);
        END IF;
        -- A fresh snapshot, taken after the row lock: sees any threshold change that committed before it.
        SELECT stock_status_for(v_q_after, p.low_stock_threshold) INTO v_new_status
          FROM products p WHERE p.id = op.product_id;
        IF v_new_status <> v_old_status THEN
            UPDATE stock_balance SET status = v_new_status, status_changed_at = now()
             WHERE product_id = op.product_id AND warehouse_id = op.warehouse_id;
            INSERT INTO status_change_outbox
                (product_id, warehouse_id, old_status, new_status, quantity, operation_id, occurred_at)
            VALUES (op.product_id, op.warehouse_id, v_old_status, v_new_status, v_q_after, op.id, op.created_at);
            INSERT INTO status_change_counter (changes) VALUES (1);
        END IF;
        RETURN NULL;
    END IF;

    -- Bulk path. 1: unknown products/warehouses, and product locks for new pairs.
    SELECT array_agg(product_id), array_agg(warehouse_id) INTO keys_p, keys_w
      FROM (SELECT DISTINCT product_id, warehouse_id FROM new_ops) k;
    PERFORM check_new_pairs(keys_p, keys_w);

    -- 2: add each pair's net change, locking balance rows in key order; keep the starting state.
    WITH net AS (
        SELECT product_id, warehouse_id, sum(quantity) AS delta
          FROM new_ops GROUP BY product_id, warehouse_id
    ),
    upserted AS (
        INSERT INTO stock_balance AS b (product_id, warehouse_id, quantity)
        SELECT product_id, warehouse_id, delta FROM net ORDER BY product_id, warehouse_id
        ON CONFLICT (product_id, warehouse_id)
            DO UPDATE SET quantity = b.quantity + excluded.quantity, updated_at = now()
        RETURNING b.product_id, b.warehouse_id, b.quantity, b.status
    )
    SELECT array_agg(u.product_id), array_agg(u.warehouse_id), array_agg(u.quantity - n.delta), array_agg(u.status)
      INTO keys_p, keys_w, start_q, start_s
      FROM upserted u JOIN net n USING (product_id, warehouse_id);

    -- 3: run the operations in id order per pair (thresholds read now, after the locks); write statuses,
    -- outbox and counter; report the first operation that would go below zero (its error undoes it all).
    WITH steps AS (
        SELECT id, product_id, warehouse_id, quantity, operation_type, created_at, q_after, row_no,
               lag(status, 1, s_start) OVER (PARTITION BY product_id, warehouse_id ORDER BY id) AS old_status,
               status AS new_status
          FROM (SELECT o.id, o.product_id, o.warehouse_id, o.quantity, o.operation_type, o.created_at,
                       s.s_start, p.low_stock_threshold,
                       s.q_start + sum(o.quantity)
                           OVER (PARTITION BY o.product_id, o.warehouse_id ORDER BY o.id) AS q_after,
                       row_number() OVER (ORDER BY o.id) AS row_no
                  FROM new_ops o
                  JOIN unnest(keys_p, keys_w, start_q, start_s) AS s (product_id, warehouse_id, q_start, s_start)
                    USING (product_id, warehouse_id)
                  JOIN products p ON p.id = o.product_id) r,
               LATERAL (SELECT stock_status_for(r.q_after, r.low_stock_threshold) AS status) st
    ),
    final AS (
        SELECT DISTINCT ON (product_id, warehouse_id) product_id, warehouse_id, new_status
          FROM steps ORDER BY product_id, warehouse_id, id DESC
    ),
    statuses AS (
        UPDATE stock_balance b SET status = f.new_status, status_changed_at = now()
          FROM final f
         WHERE b.product_id = f.product_id AND b.warehouse_id = f.warehouse_id AND b.status <> f.new_status
    ),
    events AS (
        INSERT INTO status_change_outbox
            (product_id, warehouse_id, old_status, new_status, quantity, operation_id, occurred_at)
        SELECT product_id, warehouse_id, old_status, new_status, q_after, id, created_at
          FROM steps WHERE new_status <> old_status
         ORDER BY product_id, warehouse_id, id
        RETURNING 1
    ),
    counted AS (
        INSERT INTO status_change_counter (changes)
        SELECT count(*) FROM events HAVING count(*) > 0
    )
    SELECT product_id, warehouse_id, q_after - quantity AS available, -quantity AS requested,
           operation_type, row_no
      INTO bad
      FROM steps WHERE q_after < 0 ORDER BY id LIMIT 1;
    IF FOUND THEN
        PERFORM raise_insufficient_stock(bad.product_id, bad.warehouse_id, bad.available, bad.requested,
                                         bad.operation_type, bad.row_no);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER update_stock_and_status
    AFTER INSERT ON warehouse_operations
    REFERENCING NEW TABLE AS new_ops
    FOR EACH STATEMENT EXECUTE FUNCTION update_stock_and_status();

-- One wake-up per statement that wrote status changes, constant payload: PostgreSQL folds duplicates
-- within a transaction, and the outbox (not the payload) is the truth.
CREATE FUNCTION notify_status_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_events) THEN
        PERFORM pg_notify('warehouse_status_changes', 'outbox');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER notify_status_change
    AFTER INSERT ON status_change_outbox
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION notify_status_change();

-- A threshold change re-evaluates the product's statuses and emits the resulting changes.
CREATE FUNCTION reevaluate_statuses() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Lock the affected balance rows in the global key order first, like every other writer.
    PERFORM 1 FROM stock_balance b
      WHERE b.product_id IN (SELECT n.id FROM new_products n JOIN old_products o USING (id)
                              WHERE n.low_stock_threshold <> o.low_stock_threshold)
      ORDER BY b.product_id, b.warehouse_id FOR UPDATE;
    WITH target AS (
        SELECT b.product_id, b.warehouse_id, b.quantity, b.status AS old_status,
               stock_status_for(b.quantity, n.low_stock_threshold) AS new_status
          FROM stock_balance b
          JOIN new_products n ON n.id = b.product_id
          JOIN old_products o ON o.id = n.id
         WHERE n.low_stock_threshold <> o.low_stock_threshold
           AND b.status <> stock_status_for(b.quantity, n.low_stock_threshold)
    ),
    statuses AS (
        UPDATE stock_balance b SET status = t.new_status, status_changed_at = now()
          FROM target t
         WHERE b.product_id = t.product_id AND b.warehouse_id = t.warehouse_id
    ),
    events AS (
        INSERT INTO status_change_outbox
            (product_id, warehouse_id, old_status, new_status, quantity, operation_id, occurred_at)
        SELECT product_id, warehouse_id, old_status, new_status, quantity, NULL, now()
          FROM target ORDER BY product_id, warehouse_id
        RETURNING 1
    )
    INSERT INTO status_change_counter (changes)
    SELECT count(*) FROM events HAVING count(*) > 0;
    RETURN NULL;
END
$$;

CREATE TRIGGER reevaluate_statuses
    AFTER UPDATE ON products
    REFERENCING OLD TABLE AS old_products NEW TABLE AS new_products
    FOR EACH STATEMENT EXECUTE FUNCTION reevaluate_statuses();
