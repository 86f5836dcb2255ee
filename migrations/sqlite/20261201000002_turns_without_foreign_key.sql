-- As on Postgres: the transcript's foreign key goes (SQLite drops one only by rebuilding the
-- table). The rebuild also gives call_record_id and seq the NOT NULL the first migration meant.
CREATE TABLE call_turns_rebuilt (
    account        TEXT    NOT NULL,
    call_record_id INTEGER NOT NULL,
    seq            INTEGER NOT NULL,
    call_detail_id INTEGER,
    speaker        TEXT,
    text           TEXT,
    extra          TEXT    NOT NULL DEFAULT '{}',
    PRIMARY KEY (account, call_record_id, seq)
);
INSERT INTO call_turns_rebuilt (account, call_record_id, seq, call_detail_id, speaker, text, extra)
SELECT account, call_record_id, seq, call_detail_id, speaker, text, extra FROM call_turns;
DROP TABLE call_turns;
ALTER TABLE call_turns_rebuilt RENAME TO call_turns;
