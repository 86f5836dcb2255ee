-- SQLite twin of migrations/postgres/20261201000003_completeness_and_erasure.sql.
-- Completeness: what each reconciliation of a job found, so that a job's completeness is answered
-- from the database without calling the platform. One row per job, updated by every run.
CREATE TABLE job_reconciliations (
    account           TEXT        NOT NULL,
    robot_call_job_id BIGINT      NOT NULL,
    -- finished calls the platform's listing (callRecord/getCallRecordInfoList) held at the last run
    listed            BIGINT      NOT NULL,
    -- calls stored by reconciliation over all runs, and listed calls that could not be parsed
    backfilled        BIGINT      NOT NULL,
    rejected          BIGINT      NOT NULL,
    runs              BIGINT      NOT NULL DEFAULT 1,
    reconciled_at     TEXT NOT NULL,
    PRIMARY KEY (account, robot_call_job_id)
);

-- The operator event last announced about a job, so that each is announced once.
CREATE TABLE job_announcements (
    account           TEXT        NOT NULL,
    robot_call_job_id BIGINT      NOT NULL,
    announced         TEXT        NOT NULL CHECK (announced IN ('job.incomplete', 'job.reconciled')),
    announced_at      TEXT        NOT NULL,
    PRIMARY KEY (account, robot_call_job_id)
);

-- A job's events (its deliveries for completeness) and a call's events (erasure) by index.
CREATE INDEX events_job_idx ON events (account, robot_call_job_id) WHERE robot_call_job_id IS NOT NULL;
CREATE INDEX events_call_idx ON events (account, call_record_id) WHERE call_record_id IS NOT NULL;

-- Erasure: rows whose personal fields were cleared keep their counts and say when.
ALTER TABLE call_records ADD COLUMN erased_at TEXT;
ALTER TABLE sms_requests ADD COLUMN erased_at TEXT;

-- The proof that an erasure happened, without the number: a keyed hash of it.
CREATE TABLE erasures (
    id               INTEGER     PRIMARY KEY AUTOINCREMENT,
    account          TEXT        NOT NULL,
    phone_hash       TEXT        NOT NULL,
    requested_by     TEXT        NOT NULL,
    erased_at        TEXT        NOT NULL,
    call_record_ids  TEXT        NOT NULL,
    -- rows changed, by kind: {"call_records": n, "call_turns": n, …}
    counts           TEXT        NOT NULL
);
CREATE INDEX erasures_account_idx ON erasures (account, erased_at);

-- The key of those hashes: random per database, so that a hash cannot be looked up in a table of
-- hashed numbers made elsewhere.
CREATE TABLE erasure_key (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    key TEXT    NOT NULL
);
INSERT INTO erasure_key (id, key) VALUES (1, lower(hex(randomblob(32))));

-- For SQL users: each job's calls by how they arrived, what reconciliation listed, and its
-- deliveries by status (operator events excluded). `calls_missing` is NULL until reconciled.
CREATE VIEW report_job_completeness AS
WITH job_ids AS (
    SELECT account, robot_call_job_id FROM call_records WHERE robot_call_job_id IS NOT NULL
    UNION SELECT account, robot_call_job_id FROM jobs
    UNION SELECT account, robot_call_job_id FROM job_reconciliations
)
SELECT
    j.account,
    j.robot_call_job_id,
    (SELECT MIN(c.received_at) FROM jobs c
      WHERE c.account = j.account AND c.robot_call_job_id = j.robot_call_job_id AND c.status = 'COMPLETED') AS completion_received_at,
    (SELECT COUNT(*) FROM call_records c
      WHERE c.account = j.account AND c.robot_call_job_id = j.robot_call_job_id AND c.source = 'push') AS calls_pushed,
    (SELECT COUNT(*) FROM call_records c
      WHERE c.account = j.account AND c.robot_call_job_id = j.robot_call_job_id AND c.source = 'backfill') AS calls_backfilled,
    r.listed AS calls_listed,
    CASE WHEN r.listed IS NULL THEN NULL ELSE MAX(r.listed - (SELECT COUNT(*) FROM call_records c
      WHERE c.account = j.account AND c.robot_call_job_id = j.robot_call_job_id), 0) END AS calls_missing,
    r.rejected AS calls_rejected,
    r.runs AS reconciliation_runs,
    r.reconciled_at,
    a.announced,
    a.announced_at,
    (SELECT COUNT(*) FROM events e JOIN deliveries d ON d.event_id = e.id
      WHERE e.account = j.account AND e.robot_call_job_id = j.robot_call_job_id
        AND e.type NOT IN ('job.incomplete', 'job.reconciled', 'person.erased') AND d.status = 'pending') AS deliveries_pending,
    (SELECT COUNT(*) FROM events e JOIN deliveries d ON d.event_id = e.id
      WHERE e.account = j.account AND e.robot_call_job_id = j.robot_call_job_id
        AND e.type NOT IN ('job.incomplete', 'job.reconciled', 'person.erased') AND d.status = 'dead') AS deliveries_dead
FROM job_ids j
LEFT JOIN job_reconciliations r ON r.account = j.account AND r.robot_call_job_id = j.robot_call_job_id
LEFT JOIN job_announcements a ON a.account = j.account AND a.robot_call_job_id = j.robot_call_job_id;
