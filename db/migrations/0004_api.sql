-- The API's own tables: its users (API keys with a role) and the results of idempotent writes.

CREATE TYPE api_role AS ENUM ('viewer', 'operator', 'admin');

-- A key is shown once, when it is made; only its SHA-256 is stored. Keys are 256 random bits, so a fast hash
-- is enough: no password-style stretching is needed against guessing.
CREATE TABLE api_keys (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text        NOT NULL CHECK (name <> ''),
    role       api_role    NOT NULL,
    key_hash   bytea       NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    key_prefix text        NOT NULL,  -- the key's first characters, to tell keys apart in listings
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

-- One row per Idempotency-Key of an API key: the request it was first used with (a hash) and the result it
-- got (always a 201: only successful writes are kept). Written in the write's own transaction, so a result is stored exactly when its write is committed.
CREATE TABLE idempotent_requests (
    api_key_id      bigint      NOT NULL REFERENCES api_keys (id),
    idempotency_key text        NOT NULL,
    request_hash    bytea       NOT NULL,
    response_body   jsonb,  -- NULL only inside the claiming transaction, which fills it before it commits
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (api_key_id, idempotency_key)
);
CREATE INDEX idempotent_requests_created_at ON idempotent_requests (created_at);
