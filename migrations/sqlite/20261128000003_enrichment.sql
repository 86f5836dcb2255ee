-- What the platform's callDetail adds to a pushed call (filled when the account enriches calls).
ALTER TABLE call_records ADD COLUMN intent_level_name TEXT;
ALTER TABLE call_records ADD COLUMN real_intent_level TEXT;
ALTER TABLE call_records ADD COLUMN real_intent_level_name TEXT;
ALTER TABLE call_records ADD COLUMN intent_level_tag_id INTEGER;
ALTER TABLE call_records ADD COLUMN customer TEXT;
ALTER TABLE call_records ADD COLUMN enriched_at TEXT;
