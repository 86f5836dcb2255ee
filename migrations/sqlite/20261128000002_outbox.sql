-- SQLite twin of migrations/postgres/20261128000002_outbox.sql.
-- Outbound events, written in the same transaction as the data they announce.
CREATE TABLE events (
    id          TEXT        PRIMARY KEY,
    account     TEXT        NOT NULL,
    type        TEXT        NOT NULL,
    payload     TEXT        NOT NULL,
    inbox_id    INTEGER     REFERENCES inbox (id),
    created_at  TEXT        NOT NULL
);
CREATE INDEX events_account_created_idx ON events (account, created_at);

-- One row per event and target: the durable queue the delivery worker claims from.
CREATE TABLE deliveries (
    id               INTEGER     PRIMARY KEY AUTOINCREMENT,
    event_id         TEXT        NOT NULL REFERENCES events (id),
    target           TEXT        NOT NULL,
    status           TEXT        NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts         INTEGER     NOT NULL DEFAULT 0,
    -- when a pending delivery may next be claimed; a claim pushes it out by the lease
    due_at           TEXT        NOT NULL,
    claimed_by       TEXT,
    last_status_code INTEGER,
    last_error       TEXT,
    -- start of the current retry window: creation, or the last replay
    retry_from       TEXT        NOT NULL,
    created_at       TEXT        NOT NULL,
    updated_at       TEXT        NOT NULL,
    delivered_at     TEXT       ,
    UNIQUE (event_id, target)
);
CREATE INDEX deliveries_due_idx ON deliveries (target, due_at) WHERE status = 'pending';
CREATE INDEX deliveries_target_status_idx ON deliveries (target, status, id);

-- Every attempt, for operators and for the admin API.
CREATE TABLE delivery_attempts (
    id               INTEGER     PRIMARY KEY AUTOINCREMENT,
    delivery_id      INTEGER     NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt          INTEGER     NOT NULL,
    worker           TEXT        NOT NULL,
    started_at       TEXT        NOT NULL,
    latency_ms       INTEGER     NOT NULL,
    status_code      INTEGER,
    error            TEXT,
    response_snippet TEXT
);
CREATE INDEX delivery_attempts_delivery_idx ON delivery_attempts (delivery_id, attempt);
