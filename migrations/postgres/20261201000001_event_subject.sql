-- What an event is about, in columns of its own: follow-up work, completeness and erasure find an
-- event's call or job without reading its payload.
ALTER TABLE events ADD COLUMN call_record_id BIGINT;
ALTER TABLE events ADD COLUMN robot_call_job_id BIGINT;
