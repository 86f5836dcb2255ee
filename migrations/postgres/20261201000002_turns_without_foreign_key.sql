-- A transcript's rows are written only in the transaction of their call, after it, and calls are
-- never deleted (retention removes transcripts itself): the foreign key guarded nothing that the
-- write path does not, and cost one referential check per turn (docs/BENCHMARKS.md). Analysts can
-- still rely on every turn having its call (docs/REPORTING.md).
ALTER TABLE call_turns DROP CONSTRAINT call_turns_account_call_record_id_fkey;
