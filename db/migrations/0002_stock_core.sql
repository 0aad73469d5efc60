-- Stock core: the operations ledger, balances with their status, the status-change outbox and counter,
-- and the statement-level triggers that keep them exact under parallel writers (see README "Data rules").
--
-- Locking protocol (what keeps parallel loaders exact and free of deadlocks):
--   * balance rows are locked and written once per statement, in one global order (product_id, warehouse_id),
--     by a single ordered INSERT … ON CONFLICT DO UPDATE;
--   * writers hold ROW EXCLUSIVE on stock_balance; a threshold change takes SHARE ROW EXCLUSIVE, so it runs
--     between writers, never beside one: the thresholds a writer reads cannot change under it;
--   * writers never touch the counter: a status change is counted by its outbox row until the row is
--     published and deleted, and from then on by status_change_counter, which the deletion updates.

CREATE TYPE operation_type AS ENUM ('receipt', 'shipment', 'transfer_in', 'transfer_out', 'adjustment');
CREATE TYPE stock_status AS ENUM ('available', 'running_low', 'out_of_stock');

-- The rule: 0 -> out_of_stock, 1..threshold -> running_low, above -> available. Inlined by the planner.
CREATE FUNCTION stock_status_for(quantity bigint, threshold integer) RETURNS stock_status
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN quantity <= 0 THEN 'out_of_stock'::stock_status
                WHEN quantity <= threshold THEN 'running_low'::stock_status
                ELSE 'available'::stock_status END
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
    -- Columns that most writes leave alone come first and the ones every write changes last: an update's WAL
    -- record then carries only the changed tail of the row (PostgreSQL omits the unchanged prefix).
    product_id        bigint       NOT NULL REFERENCES products (id),
    warehouse_id      bigint       NOT NULL REFERENCES warehouses (id),
    -- When the status last changed before the row's last write (or, until a write changes it, when the row was
    -- made). The time of the last change, as products_status shows it, is updated_at when that write changed
    -- the status, else this. So a write carries it forward from the old row's columns alone, without
    -- evaluating the status rule a second time (≈ 5k instructions of a one-row insert's ≈ 370k). A write is a
    -- statement: a batch that takes a pair's status away and back again changes it by this measure not at all
    -- (its outbox still holds both changes).
    prior_change_at   timestamptz  NOT NULL DEFAULT now(),
    -- The product's threshold, kept here so the one write per pair can compute the status from the row it
    -- locked; a threshold change rewrites it (reevaluate_statuses).
    low_stock_threshold integer    NOT NULL,
    status            stock_status NOT NULL DEFAULT 'out_of_stock',
    -- The status before the row's last write: the one-row path reads the old status from here (cheaper than
    -- recomputing it from the old quantity).
    previous_status   stock_status NOT NULL DEFAULT 'out_of_stock',
    quantity          bigint       NOT NULL DEFAULT 0,
    updated_at        timestamptz  NOT NULL DEFAULT now(),  -- the row's last write: an operation or a threshold change
    PRIMARY KEY (product_id, warehouse_id)
) WITH (fillfactor = 50);
-- Balances are rewritten all the time, as HOT updates (no indexed column changes). Once a page is at its fill
-- level, every update prunes the page's dead versions, at a cost that grows with the rows on the page: half-full
-- pages cost ≈ 2 % fewer instructions per one-row insert than 80 % (callgrind), for twice the space.
CREATE INDEX stock_balance_warehouse ON stock_balance (warehouse_id, product_id);

-- When a balance row's status last changed (see prior_change_at). Inlined by the planner. A write stores it, as
-- of before the write, in prior_change_at.
CREATE FUNCTION status_change_time(status stock_status, previous_status stock_status, updated_at timestamptz,
                                   prior_change_at timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN status <> previous_status THEN updated_at ELSE prior_change_at END
$$;

-- The original system's status table, kept as a view of the same rows.
CREATE VIEW products_status AS
    SELECT product_id, warehouse_id, status,
           status_change_time(status, previous_status, updated_at, prior_change_at) AS changed_at
      FROM stock_balance;

-- One row per status change, written in the operation's transaction; the bridge publishes and deletes them.
-- Per pair, id order is commit order: the trigger takes the id only after locking the pair's balance row.
-- old_status is what the pair had before the operation: by the rule, from the quantity before it.
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

-- The global count of status changes. Every change is counted exactly once, in one of two places: its outbox
-- row while it waits to be published, then, from the transaction that deletes that row (the bridge, after
-- publishing it), status_change_counter, which the deletion updates (trigger count_removed_changes). So
-- writers pay nothing for the count (no counter row per statement, no contended row), and one statement reads
-- both places in one snapshot: the total is exact at every moment, whatever is published or not.
-- Each deleting statement folds the counter's rows and its own count into one new row, so the table holds
-- one row (none before the first deletion). It folds only rows no other transaction holds (SKIP LOCKED), so
-- deleting transactions never wait for each other here; overlapping ones leave a row each. No key, no index.
CREATE TABLE status_change_counter (
    changes     bigint      NOT NULL CHECK (changes >= 0),
    recorded_at timestamptz NOT NULL DEFAULT now()
);

-- Reading it costs a count of the outbox: a few rows while a bridge keeps up, the whole backlog while none runs.
CREATE FUNCTION status_change_count() RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT (SELECT coalesce(sum(changes), 0) FROM status_change_counter)
         + (SELECT count(*) FROM status_change_outbox)
$$;

CREATE FUNCTION count_removed_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM removed) THEN
        RETURN NULL;
    END IF;
    WITH folded AS (
        DELETE FROM status_change_counter
         WHERE ctid IN (SELECT ctid FROM status_change_counter FOR UPDATE SKIP LOCKED)
        RETURNING changes
    )
    INSERT INTO status_change_counter (changes)
    SELECT (SELECT coalesce(sum(changes), 0) FROM folded) + (SELECT count(*) FROM removed);
    RETURN NULL;
END
$$;

CREATE TRIGGER count_removed_changes
    AFTER DELETE ON status_change_outbox
    REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION count_removed_changes();

-- TRUNCATE fires no delete trigger, so it would lose the count of the rows it removes.
CREATE FUNCTION outbox_is_not_truncated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'invalid operation: TRUNCATE of status_change_outbox would lose the count of its changes; DELETE them instead (the deletion counts them)'
        USING ERRCODE = 'WH004';
END
$$;

CREATE TRIGGER outbox_is_not_truncated
    BEFORE TRUNCATE ON status_change_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_is_not_truncated();

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

-- The clear error for pairs whose product or warehouse does not exist.
CREATE FUNCTION raise_unknown_references(pair_products bigint[], pair_warehouses bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    missing_product bigint;
    missing_warehouse bigint;
BEGIN
    SELECT min(k.product_id) FILTER (WHERE NOT EXISTS (SELECT 1 FROM products p WHERE p.id = k.product_id)),
           min(k.warehouse_id) FILTER (WHERE NOT EXISTS (SELECT 1 FROM warehouses w WHERE w.id = k.warehouse_id))
      INTO missing_product, missing_warehouse
      FROM unnest(pair_products, pair_warehouses) AS k (product_id, warehouse_id);
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
    one_id bigint;
    one_product bigint;
    one_warehouse bigint;
    one_quantity integer;
    one_type operation_type;
    one_transfer uuid;
    one_at timestamptz;
    balance_after bigint;
    status_after stock_status;
    status_before stock_status;
    keys_p bigint[];
    keys_w bigint[];
    bad record;
BEGIN
    -- Fast path for the API's one-row inserts on a pair that has a balance row and enough stock: the row is
    -- read into variables (STRICT: a batch raises too_many_rows, caught; cheaper than counting the rows), then
    -- one indexed update by key is the row lock and the write, and the outbox row follows only
    -- when the status changed. Against threshold changes its ROW EXCLUSIVE lock suffices: the threshold it
    -- uses is the one in the row version it locks and writes. A batch, a new pair, or an unknown product or
    -- warehouse takes the general path below.
    -- (Counted with callgrind, of ≈ 400k instructions per one-row insert at the time: an UPDATE joined to the
    -- transition table instead of by variables costs ≈ 44k more, counting the rows ≈ 22k; docs/db-performance.md.)
    -- Every column, in table order: the scan then hands the stored row over as it is instead of building a
    -- projection (≈ 3k instructions of a one-row insert).
    BEGIN
        SELECT o.id, o.product_id, o.warehouse_id, o.quantity, o.operation_type, o.transfer_id, o.created_at
          INTO STRICT one_id, one_product, one_warehouse, one_quantity, one_type, one_transfer, one_at
          FROM new_ops o;
    EXCEPTION
        WHEN no_data_found THEN
            RETURN NULL;
        WHEN too_many_rows THEN
            one_id := NULL;
    END;
    IF one_id IS NOT NULL THEN
        UPDATE stock_balance b
           SET quantity = b.quantity + one_quantity,
               previous_status = b.status,
               status = stock_status_for(b.quantity + one_quantity, b.low_stock_threshold),
               prior_change_at = status_change_time(b.status, b.previous_status, b.updated_at, b.prior_change_at),
               updated_at = now()
         WHERE b.product_id = one_product AND b.warehouse_id = one_warehouse
        RETURNING b.quantity, b.status, b.previous_status
        INTO balance_after, status_after, status_before;
        -- No row (balance_after NULL): a new pair, or an unknown product or warehouse; the general path decides.
        IF balance_after >= 0 THEN
            IF status_before <> status_after THEN
                INSERT INTO status_change_outbox
                    (product_id, warehouse_id, old_status, new_status, quantity, operation_id, occurred_at)
                VALUES (one_product, one_warehouse, status_before, status_after, balance_after, one_id, one_at);
            END IF;
            RETURN NULL;
        ELSIF balance_after < 0 THEN
            PERFORM raise_insufficient_stock(one_product, one_warehouse, balance_after - one_quantity,
                                             -one_quantity, one_type, 1);
        END IF;
    END IF;

    -- Waits while a threshold change runs; from here on no threshold can change under this transaction, so
    -- the thresholds read from products for new pairs below are current.
    LOCK TABLE stock_balance IN ROW EXCLUSIVE MODE;

    -- General path: one statement. Running sums per pair are computed before any lock is taken (the sort under
    -- the ordered insert consumes them first); then one ordered write per pair adds the net change, sets the
    -- final status and is the lock; then each status change is written to the outbox.
    -- Pairs whose product or warehouse is unknown drop out of the write and are reported below; the first
    -- operation that would go below zero is reported too. Either error undoes the whole statement.
    -- Run with EXECUTE, so it is planned for each statement, for its own number of rows (≈ 0.5 ms): a plan
    -- cached per connection would be the first statement's, and one made for a one-row statement joins these
    -- row sets with nested loops, quadratic in the rows of a later batch. One-row inserts on stocked pairs,
    -- transfers between them included, never come here.
    EXECUTE $general$
    WITH running AS (
        SELECT id, product_id, warehouse_id, quantity, created_at,
               sum(quantity) OVER (PARTITION BY product_id, warehouse_id ORDER BY id) AS q_relative
          FROM new_ops
    ),
    net AS (
        SELECT product_id, warehouse_id, sum(quantity) AS delta
          FROM running GROUP BY product_id, warehouse_id
    ),
    upserted AS (
        INSERT INTO stock_balance AS b (product_id, warehouse_id, quantity, status, low_stock_threshold)
        SELECT n.product_id, n.warehouse_id, n.delta,
               stock_status_for(n.delta, p.low_stock_threshold), p.low_stock_threshold
          FROM net n
          JOIN products p ON p.id = n.product_id
         WHERE n.warehouse_id IN (SELECT id FROM warehouses)
         ORDER BY n.product_id, n.warehouse_id
        ON CONFLICT (product_id, warehouse_id) DO UPDATE
           SET quantity = b.quantity + excluded.quantity,
               previous_status = b.status,
               status = stock_status_for(b.quantity + excluded.quantity, b.low_stock_threshold),
               prior_change_at = status_change_time(b.status, b.previous_status, b.updated_at, b.prior_change_at),
               updated_at = now()
        RETURNING b.product_id, b.warehouse_id, b.quantity, b.low_stock_threshold
    ),
    steps AS (
        SELECT r.id, r.product_id, r.warehouse_id, r.quantity, r.created_at, u.low_stock_threshold AS threshold,
               u.quantity - n.delta + r.q_relative AS q_after
          FROM running r
          JOIN upserted u USING (product_id, warehouse_id)
          JOIN net n USING (product_id, warehouse_id)
    ),
    events AS (
        INSERT INTO status_change_outbox
            (product_id, warehouse_id, old_status, new_status, quantity, operation_id, occurred_at)
        SELECT product_id, warehouse_id, stock_status_for(q_after - quantity, threshold),
               stock_status_for(q_after, threshold), q_after, id, created_at
          FROM steps
         WHERE stock_status_for(q_after - quantity, threshold) <> stock_status_for(q_after, threshold)
           AND q_after >= 0
         ORDER BY product_id, warehouse_id, id
    )
    SELECT (SELECT count(*) FROM net) - (SELECT count(*) FROM upserted) AS unknown_pairs,
           first_negative.id, first_negative.product_id, first_negative.warehouse_id,
           first_negative.quantity, first_negative.q_after
      FROM (SELECT 1) AS one
      LEFT JOIN LATERAL (SELECT * FROM steps WHERE q_after < 0 ORDER BY id LIMIT 1) AS first_negative ON true
    $general$ INTO bad;

    IF bad.unknown_pairs > 0 THEN
        SELECT array_agg(product_id), array_agg(warehouse_id) INTO keys_p, keys_w
          FROM (SELECT DISTINCT product_id, warehouse_id FROM new_ops) k;
        PERFORM raise_unknown_references(keys_p, keys_w);
    END IF;
    IF bad.id IS NOT NULL THEN
        PERFORM raise_insufficient_stock(
            bad.product_id, bad.warehouse_id, bad.q_after - bad.quantity, -bad.quantity,
            (SELECT operation_type FROM new_ops WHERE id = bad.id),
            (SELECT count(*) FROM new_ops WHERE id <= bad.id));
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
--
-- A notifying commit takes a cluster-wide lock, so notifying transactions commit one at a time (no group
-- commit). A wake-up is only useful to a bridge that is idle, listening; so only then is it sent:
--   * an idle bridge holds advisory lock 7735218433629061301 ("listening") exclusively while it waits for
--     notifications, and releases it when it wakes up to drain;
--   * a statement that writes status changes tries to take "listening" shared: if it cannot, a bridge is
--     listening (or about to), and the writer notifies. If it can, no bridge is listening; the writer skips
--     the wake-up and holds the lock shared until it commits;
--   * a bridge that found the outbox empty takes "listening" exclusively (waiting for the writers that
--     skipped to commit), drains once more, and only then waits for notifications.
-- So no committed change is left unannounced to an idle bridge, and under load (bridge busy) or with no
-- bridge at all, writers do not pay for NOTIFY. A new bridge drains everything at start.
-- Writers never wait on this lock (try-lock), so it cannot take part in a lock cycle. Only a statement that
-- wrote a change tries it: a writer that changed nothing never holds a bridge back from listening.
CREATE FUNCTION notify_status_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM new_events) THEN  -- checked first: only a writer of changes takes the lock
        RETURN NULL;
    END IF;
    IF NOT pg_try_advisory_xact_lock_shared(7735218433629061301) THEN
        PERFORM pg_notify('warehouse_status_changes', 'outbox');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER notify_status_change
    AFTER INSERT ON status_change_outbox
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION notify_status_change();

-- A threshold change re-evaluates the product's statuses and emits the resulting changes. It waits for
-- running writers and holds new ones back until it commits (SHARE ROW EXCLUSIVE): threshold changes are rare,
-- and this keeps every writer's view of thresholds fixed for its whole transaction.
CREATE FUNCTION reevaluate_statuses() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM new_products n JOIN old_products o USING (id)
                    WHERE n.low_stock_threshold <> o.low_stock_threshold) THEN
        RETURN NULL;
    END IF;
    LOCK TABLE stock_balance IN SHARE ROW EXCLUSIVE MODE;
    WITH target AS (
        SELECT b.product_id, b.warehouse_id, b.quantity, b.status AS old_status, n.low_stock_threshold,
               stock_status_for(b.quantity, n.low_stock_threshold) AS new_status
          FROM stock_balance b
          JOIN new_products n ON n.id = b.product_id
         WHERE b.low_stock_threshold <> n.low_stock_threshold
    ),
    updated AS (
        UPDATE stock_balance b
           SET low_stock_threshold = t.low_stock_threshold,
               previous_status = b.status,
               status = t.new_status,
               prior_change_at = status_change_time(b.status, b.previous_status, b.updated_at, b.prior_change_at),
               updated_at = now()
          FROM target t
         WHERE b.product_id = t.product_id AND b.warehouse_id = t.warehouse_id
    )
    INSERT INTO status_change_outbox
        (product_id, warehouse_id, old_status, new_status, quantity, operation_id, occurred_at)
    SELECT product_id, warehouse_id, old_status, new_status, quantity, NULL, now()
      FROM target WHERE new_status <> old_status
     ORDER BY product_id, warehouse_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER reevaluate_statuses
    AFTER UPDATE ON products
    REFERENCING OLD TABLE AS old_products NEW TABLE AS new_products
    FOR EACH STATEMENT EXECUTE FUNCTION reevaluate_statuses();

-- A transfer: both legs with one transfer_id, atomically; insufficient stock at the source moves nothing.
CREATE FUNCTION transfer_stock(product bigint, from_warehouse bigint, to_warehouse bigint, amount integer)
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
        INSERT INTO warehouse_operations (product_id, warehouse_id, quantity, operation_type, transfer_id)
        VALUES (product, leg.warehouse, leg.quantity, leg.kind, transfer);
    END LOOP;
    RETURN transfer;
END
$$;

-- An inventory count: records the difference between the counted and the stored quantity as an adjustment,
-- computed under the pair's row lock so no concurrent operation slips in between. Returns the operation's id,
-- or NULL when the count matches.
CREATE FUNCTION adjust_stock(product bigint, warehouse bigint, counted bigint)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    stored bigint;
    operation bigint;
BEGIN
    IF counted IS NULL OR counted < 0 THEN
        RAISE EXCEPTION 'invalid operation: a counted quantity is 0 or more, got %', counted
            USING ERRCODE = 'WH004';
    END IF;
    PERFORM raise_unknown_references(ARRAY[product], ARRAY[warehouse]);
    LOCK TABLE stock_balance IN ROW EXCLUSIVE MODE;  -- see the locking protocol at the top
    -- A pair never stocked gets its (empty) row first, so there is always a row to lock.
    INSERT INTO stock_balance (product_id, warehouse_id, low_stock_threshold)
    SELECT product, warehouse, p.low_stock_threshold FROM products p WHERE p.id = product
    ON CONFLICT (product_id, warehouse_id) DO NOTHING;
    SELECT b.quantity INTO stored FROM stock_balance b
     WHERE b.product_id = product AND b.warehouse_id = warehouse FOR UPDATE;
    IF stored = counted THEN
        RETURN NULL;
    END IF;
    INSERT INTO warehouse_operations (product_id, warehouse_id, quantity, operation_type)
    VALUES (product, warehouse, counted - stored, 'adjustment')
    RETURNING id INTO operation;
    RETURN operation;
END
$$;
