-- name: differences
-- Every pair whose stored balance or status differs from what its operations and the rule give.
-- One statement, so one consistent snapshot even while writers run.
WITH ledger AS (
    SELECT product_id, warehouse_id, sum(quantity) AS quantity
      FROM warehouse_operations GROUP BY product_id, warehouse_id
),
compared AS (
    SELECT coalesce(l.product_id, b.product_id) AS product_id,
           coalesce(l.warehouse_id, b.warehouse_id) AS warehouse_id,
           coalesce(l.quantity, 0) AS expected_quantity,
           b.quantity AS stored_quantity,
           stock_status_for(coalesce(l.quantity, 0), p.low_stock_threshold) AS expected_status,
           b.status AS stored_status,
           p.low_stock_threshold AS threshold,
           b.low_stock_threshold AS stored_threshold
      FROM ledger l
      FULL JOIN stock_balance b USING (product_id, warehouse_id)
      LEFT JOIN products p ON p.id = coalesce(l.product_id, b.product_id)
)
SELECT product_id, warehouse_id, expected_quantity, stored_quantity, expected_status, stored_status
  FROM compared
 WHERE stored_quantity IS DISTINCT FROM expected_quantity
    OR stored_status IS DISTINCT FROM expected_status
    OR stored_threshold IS DISTINCT FROM threshold
    OR expected_quantity < 0
 ORDER BY product_id, warehouse_id;

-- name: summary
SELECT (SELECT count(*) FROM warehouse_operations) AS operations,
       (SELECT count(*) FROM stock_balance) AS pairs,
       status_change_count() AS status_changes;

-- name: broken_transfers
-- Every transfer whose legs are not one transfer_out and one transfer_in of the same product between two
-- warehouses, netting to zero (transfer_stock writes them so; a hand-written leg may not).
SELECT transfer_id,
       count(*) AS legs,
       count(*) FILTER (WHERE operation_type = 'transfer_out') AS outbound,
       count(DISTINCT product_id) AS products,
       count(DISTINCT warehouse_id) AS warehouses,
       sum(quantity) AS net
  FROM warehouse_operations
 WHERE transfer_id IS NOT NULL
 GROUP BY transfer_id
HAVING count(*) <> 2
    OR count(*) FILTER (WHERE operation_type = 'transfer_out') <> 1
    OR count(DISTINCT product_id) <> 1
    OR count(DISTINCT warehouse_id) <> 2
    OR sum(quantity) <> 0
 ORDER BY min(id);

-- name: pairs
-- Every pair as `python -m bridge verify` compares it with the topics (bridge/verify.py), in key order.
SELECT product_id, warehouse_id, status, seq, published_seq, published_status, waiting
  FROM stock_status_seq
 ORDER BY product_id, warehouse_id;

-- name: pairs_again
-- The verifier's second look at the pairs a topic showed further along than its first snapshot.
SELECT s.product_id, s.warehouse_id, s.seq
  FROM unnest($1::bigint[], $2::bigint[]) AS k (product_id, warehouse_id)
  JOIN stock_status_seq s USING (product_id, warehouse_id);
