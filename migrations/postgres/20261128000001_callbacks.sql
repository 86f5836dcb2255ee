-- Every authenticated callback body, kept raw so that the normalized tables can be rebuilt after a
-- parser fix. One row per distinct content of one thing: a re-sent callback only bumps the counters.
CREATE TABLE inbox (
    id             BIGSERIAL   PRIMARY KEY,
    account        TEXT        NOT NULL,
    data_type      TEXT,
    -- what the callback is about: call:<id>, job:<id>:<status>, sms:<call id>:<hash>,
    -- unrecognized:<hash>, rejected:<hash>
    dedup_key      TEXT        NOT NULL,
    content_sha256 TEXT        NOT NULL,
    status         TEXT        NOT NULL CHECK (status IN ('stored', 'rejected', 'unrecognized')),
    error          TEXT,
    source         TEXT        NOT NULL DEFAULT 'push',
    body           BYTEA,
    first_seen_at  TIMESTAMPTZ NOT NULL,
    last_seen_at   TIMESTAMPTZ NOT NULL,
    times_seen     BIGINT      NOT NULL DEFAULT 1,
    UNIQUE (account, dedup_key, content_sha256)
);
CREATE INDEX inbox_status_seen_idx ON inbox (status, first_seen_at);

CREATE TABLE call_records (
    account             TEXT        NOT NULL,
    call_record_id      BIGINT      NOT NULL,
    tenant_id           BIGINT,
    robot_call_job_id   BIGINT,
    dialog_flow_id      BIGINT,
    called_phone_number TEXT,
    result_status       TEXT,
    -- verbatim, custom tag groups included
    intent_level        TEXT,
    -- A to F when intent_level is a built-in grade or its code 0 to 5
    intent_grade        TEXT CHECK (intent_grade IN ('A', 'B', 'C', 'D', 'E', 'F')),
    customer_concern    JSONB       NOT NULL DEFAULT '[]',
    full_audio_url      TEXT,
    customer_audio_url  TEXT,
    analysis_basis      TEXT,
    start_time          TIMESTAMPTZ,
    end_time            TIMESTAMPTZ,
    chat_duration       BIGINT,
    chat_round          BIGINT,
    attributes          JSONB       NOT NULL DEFAULT '[]',
    properties          JSONB       NOT NULL DEFAULT '{}',
    -- fields the platform sent that this version does not know
    extra               JSONB       NOT NULL DEFAULT '{}',
    source              TEXT        NOT NULL DEFAULT 'push',
    inbox_id            BIGINT      NOT NULL REFERENCES inbox (id),
    revision            BIGINT      NOT NULL DEFAULT 1,
    received_at         TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (account, call_record_id)
);
CREATE INDEX call_records_job_idx ON call_records (account, robot_call_job_id);
CREATE INDEX call_records_start_idx ON call_records (account, start_time);

CREATE TABLE call_turns (
    account        TEXT   NOT NULL,
    call_record_id BIGINT NOT NULL,
    seq            BIGINT NOT NULL,
    call_detail_id BIGINT,
    speaker        TEXT,
    text           TEXT,
    extra          JSONB  NOT NULL DEFAULT '{}',
    PRIMARY KEY (account, call_record_id, seq),
    FOREIGN KEY (account, call_record_id) REFERENCES call_records (account, call_record_id) ON DELETE CASCADE
);

CREATE TABLE jobs (
    account           TEXT        NOT NULL,
    robot_call_job_id BIGINT      NOT NULL,
    status            TEXT        NOT NULL,
    tenant_id         BIGINT,
    extra             JSONB       NOT NULL DEFAULT '{}',
    inbox_id          BIGINT      NOT NULL REFERENCES inbox (id),
    revision          BIGINT      NOT NULL DEFAULT 1,
    received_at       TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (account, robot_call_job_id, status)
);

CREATE TABLE sms_requests (
    id                   BIGSERIAL   PRIMARY KEY,
    account              TEXT        NOT NULL,
    call_record_id       BIGINT      NOT NULL,
    content_sha256       TEXT        NOT NULL,
    tenant_id            BIGINT,
    company_name         TEXT,
    customer_person_id   BIGINT,
    customer_person_name TEXT,
    phone_number         TEXT,
    -- robotCallRobotId / robotCallRobotName on the wire
    robot_call_job_id    BIGINT,
    robot_call_job_name  TEXT,
    extra                JSONB       NOT NULL DEFAULT '{}',
    inbox_id             BIGINT      NOT NULL REFERENCES inbox (id),
    received_at          TIMESTAMPTZ NOT NULL,
    UNIQUE (account, call_record_id, content_sha256)
);

CREATE TABLE sms_messages (
    sms_request_id     BIGINT NOT NULL REFERENCES sms_requests (id) ON DELETE CASCADE,
    seq                BIGINT NOT NULL,
    sms_template_id    BIGINT,
    sms_template_name  TEXT,
    sms_signature_id   BIGINT,
    sms_signature_name TEXT,
    kind               TEXT,
    template_text      TEXT,
    message            TEXT,
    var_map            JSONB  NOT NULL DEFAULT '{}',
    extra              JSONB  NOT NULL DEFAULT '{}',
    PRIMARY KEY (sms_request_id, seq)
);
