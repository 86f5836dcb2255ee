-- SQLite twin of migrations/postgres: times are RFC 3339 UTC text, JSON is text, ids are INTEGER.
-- Every authenticated callback body, kept raw so that the normalized tables can be rebuilt after a
-- parser fix. One row per distinct content of one thing: a re-sent callback only bumps the counters.
CREATE TABLE inbox (
    id             INTEGER     PRIMARY KEY AUTOINCREMENT,
    account        TEXT        NOT NULL,
    data_type      TEXT,
    -- what the callback is about: call:<id>, job:<id>:<status>, sms:<call id>:<hash>,
    -- unrecognized:<hash>, rejected:<hash>
    dedup_key      TEXT        NOT NULL,
    content_sha256 TEXT        NOT NULL,
    status         TEXT        NOT NULL CHECK (status IN ('stored', 'rejected', 'unrecognized')),
    error          TEXT,
    source         TEXT        NOT NULL DEFAULT 'push',
    body           BLOB ,
    first_seen_at  TEXT        NOT NULL,
    last_seen_at   TEXT        NOT NULL,
    times_seen     INTEGER     NOT NULL DEFAULT 1,
    UNIQUE (account, dedup_key, content_sha256)
);
CREATE INDEX inbox_status_seen_idx ON inbox (status, first_seen_at);

CREATE TABLE call_records (
    account             TEXT        NOT NULL,
    call_record_id      INTEGER     NOT NULL,
    tenant_id           INTEGER,
    robot_call_job_id   INTEGER,
    dialog_flow_id      INTEGER,
    called_phone_number TEXT,
    result_status       TEXT,
    -- verbatim, custom tag groups included
    intent_level        TEXT,
    -- A to F when intent_level is a built-in grade or its code 0 to 5
    intent_grade        TEXT CHECK (intent_grade IN ('A', 'B', 'C', 'D', 'E', 'F')),
    customer_concern    TEXT        NOT NULL DEFAULT '[]',
    full_audio_url      TEXT,
    customer_audio_url  TEXT,
    analysis_basis      TEXT,
    start_time          TEXT       ,
    end_time            TEXT       ,
    chat_duration       INTEGER,
    chat_round          INTEGER,
    attributes          TEXT        NOT NULL DEFAULT '[]',
    properties          TEXT        NOT NULL DEFAULT '{}',
    -- fields the platform sent that this version does not know
    extra               TEXT        NOT NULL DEFAULT '{}',
    source              TEXT        NOT NULL DEFAULT 'push',
    inbox_id            INTEGER     NOT NULL REFERENCES inbox (id),
    revision            INTEGER     NOT NULL DEFAULT 1,
    received_at         TEXT        NOT NULL,
    updated_at          TEXT        NOT NULL,
    PRIMARY KEY (account, call_record_id)
);
CREATE INDEX call_records_job_idx ON call_records (account, robot_call_job_id);
CREATE INDEX call_records_start_idx ON call_records (account, start_time);

CREATE TABLE call_turns (
    account        TEXT   NOT NULL,
    call_record_id INTEGERNOT NULL,
    seq            INTEGERNOT NULL,
    call_detail_id INTEGER,
    speaker        TEXT,
    text           TEXT,
    extra          TEXT   NOT NULL DEFAULT '{}',
    PRIMARY KEY (account, call_record_id, seq),
    FOREIGN KEY (account, call_record_id) REFERENCES call_records (account, call_record_id) ON DELETE CASCADE
);

CREATE TABLE jobs (
    account           TEXT        NOT NULL,
    robot_call_job_id INTEGER     NOT NULL,
    status            TEXT        NOT NULL,
    tenant_id         INTEGER,
    extra             TEXT        NOT NULL DEFAULT '{}',
    inbox_id          INTEGER     NOT NULL REFERENCES inbox (id),
    revision          INTEGER     NOT NULL DEFAULT 1,
    received_at       TEXT        NOT NULL,
    updated_at        TEXT        NOT NULL,
    PRIMARY KEY (account, robot_call_job_id, status)
);

CREATE TABLE sms_requests (
    id                   INTEGER     PRIMARY KEY AUTOINCREMENT,
    account              TEXT        NOT NULL,
    call_record_id       INTEGER     NOT NULL,
    content_sha256       TEXT        NOT NULL,
    tenant_id            INTEGER,
    company_name         TEXT,
    customer_person_id   INTEGER,
    customer_person_name TEXT,
    phone_number         TEXT,
    -- robotCallRobotId / robotCallRobotName on the wire
    robot_call_job_id    INTEGER,
    robot_call_job_name  TEXT,
    extra                TEXT        NOT NULL DEFAULT '{}',
    inbox_id             INTEGER     NOT NULL REFERENCES inbox (id),
    received_at          TEXT        NOT NULL,
    UNIQUE (account, call_record_id, content_sha256)
);

CREATE TABLE sms_messages (
    sms_request_id     INTEGERNOT NULL REFERENCES sms_requests (id) ON DELETE CASCADE,
    seq                INTEGERNOT NULL,
    sms_template_id    INTEGER,
    sms_template_name  TEXT,
    sms_signature_id   INTEGER,
    sms_signature_name TEXT,
    kind               TEXT,
    template_text      TEXT,
    message            TEXT,
    var_map            TEXT   NOT NULL DEFAULT '{}',
    extra              TEXT   NOT NULL DEFAULT '{}',
    PRIMARY KEY (sms_request_id, seq)
);
