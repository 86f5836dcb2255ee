-- Outbound events, written in the same transaction as the data they announce.
CREATE TABLE events (
    id          TEXT        PRIMARY KEY,
    account     TEXT        NOT NULL,
    type        TEXT        NOT NULL,
    payload     JSONB       NOT NULL,
    inbox_id    BIGINT      REFERENCES inbox (id),
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX events_account_created_idx ON events (account, created_at);

-- One row per event and target: the durable queue the delivery worker claims from.
CREATE TABLE deliveries (
    id               BIGSERIAL   PRIMARY KEY,
    event_id         TEXT        NOT NULL REFERENCES events (id),
    target           TEXT        NOT NULL,
    status           TEXT        NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts         BIGINT      NOT NULL DEFAULT 0,
    -- when a pending delivery may next be claimed; a claim pushes it out by the lease
    due_at           TIMESTAMPTZ NOT NULL,
    claimed_by       TEXT,
    last_status_code BIGINT,
    last_error       TEXT,
    -- start of the current retry window: creation, or the last replay
    retry_from       TIMESTAMPTZ NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    delivered_at     TIMESTAMPTZ,
    UNIQUE (event_id, target)
);
CREATE INDEX deliveries_due_idx ON deliveries (target, due_at) WHERE status = 'pending';
CREATE INDEX deliveries_target_status_idx ON deliveries (target, status, id);

-- Every attempt, for operators and for the admin API.
CREATE TABLE delivery_attempts (
    id               BIGSERIAL   PRIMARY KEY,
    delivery_id      BIGINT      NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt          BIGINT      NOT NULL,
    worker           TEXT        NOT NULL,
    started_at       TIMESTAMPTZ NOT NULL,
    latency_ms       BIGINT      NOT NULL,
    status_code      BIGINT,
    error            TEXT,
    response_snippet TEXT
);
CREATE INDEX delivery_attempts_delivery_idx ON delivery_attempts (delivery_id, attempt);
