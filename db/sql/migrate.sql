-- name: create_schema_migrations
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: lock
-- Serialises concurrent runs; the key is fixed for this project ('wh-migr').
SELECT pg_advisory_lock(7735218433629061234);

-- name: unlock
SELECT pg_advisory_unlock(7735218433629061234);

-- name: table_exists
SELECT to_regclass('schema_migrations') IS NOT NULL;

-- name: applied
SELECT version, name, checksum FROM schema_migrations ORDER BY version;

-- name: record
INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3);
