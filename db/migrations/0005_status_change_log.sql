-- The event log: every status change as published on the topic, stored by `python -m consumers.store`. The API's
-- history (GET /status-changes) and the dashboard's chart read it. One row per event: the key is the event's id,
-- so a redelivered message (a crash between the database commit and the Kafka offset commit) is stored once.

CREATE TABLE status_change_log (
    event_id     uuid         PRIMARY KEY,
    occurred_at  timestamptz  NOT NULL,
    product_id   bigint       NOT NULL,
    warehouse_id bigint       NOT NULL,
    old_status   stock_status NOT NULL,
    new_status   stock_status NOT NULL,
    quantity     bigint       NOT NULL,
    operation_id bigint,
    -- Where the event was read, for tracing a row back to the topic.
    kafka_partition integer   NOT NULL,
    kafka_offset    bigint    NOT NULL,
    stored_at    timestamptz  NOT NULL DEFAULT now()
);
-- History is read newest first (keyset on occurred_at, event_id): all of it, or one product's (a pair's too), or
-- one warehouse's.
CREATE INDEX status_change_log_newest ON status_change_log (occurred_at DESC, event_id DESC);
CREATE INDEX status_change_log_product ON status_change_log (product_id, occurred_at DESC, event_id DESC);
CREATE INDEX status_change_log_warehouse ON status_change_log (warehouse_id, occurred_at DESC, event_id DESC);
