-- The call's start in the account's own time zone ('YYYY-MM-DD HH:MM:SS'), so that day and hour
-- reports use the campaign's local day without time zone arithmetic in SQL.
ALTER TABLE call_records ADD COLUMN start_local TEXT;
CREATE INDEX call_records_start_local_idx ON call_records (account, start_local);

CREATE VIEW report_job_summary AS
SELECT
    c.account,
    c.robot_call_job_id,
    COUNT(*) AS calls,
    SUM(CASE WHEN c.result_status = 'ANSWERED' THEN 1 ELSE 0 END) AS answered,
    CAST(ROUND(CAST(SUM(CASE WHEN c.result_status = 'ANSWERED' THEN 1 ELSE 0 END) AS NUMERIC) / COUNT(*), 4) AS DOUBLE PRECISION) AS answer_rate,
    SUM(CASE WHEN c.intent_grade = 'A' THEN 1 ELSE 0 END) AS grade_a,
    SUM(CASE WHEN c.intent_grade = 'B' THEN 1 ELSE 0 END) AS grade_b,
    SUM(CASE WHEN c.intent_grade = 'C' THEN 1 ELSE 0 END) AS grade_c,
    SUM(CASE WHEN c.intent_grade = 'D' THEN 1 ELSE 0 END) AS grade_d,
    SUM(CASE WHEN c.intent_grade = 'E' THEN 1 ELSE 0 END) AS grade_e,
    SUM(CASE WHEN c.intent_grade = 'F' THEN 1 ELSE 0 END) AS grade_f,
    SUM(CASE WHEN c.intent_grade IS NULL THEN 1 ELSE 0 END) AS grade_other,
    CAST(COALESCE(SUM(c.chat_duration), 0) AS BIGINT) AS total_chat_duration,
    CAST(ROUND(CAST(AVG(c.chat_duration) AS NUMERIC), 2) AS DOUBLE PRECISION) AS avg_chat_duration,
    MIN(c.start_time) AS first_call_at,
    MAX(c.start_time) AS last_call_at,
    (SELECT MIN(j.received_at) FROM jobs j
      WHERE j.account = c.account AND j.robot_call_job_id = c.robot_call_job_id AND j.status = 'COMPLETED') AS job_completed_at
FROM call_records c
GROUP BY c.account, c.robot_call_job_id;

CREATE VIEW report_daily_outcomes AS
SELECT
    account,
    SUBSTR(start_local, 1, 10) AS local_date,
    COALESCE(result_status, 'UNKNOWN') AS result_status,
    COUNT(*) AS calls
FROM call_records
WHERE start_local IS NOT NULL
GROUP BY account, SUBSTR(start_local, 1, 10), COALESCE(result_status, 'UNKNOWN');
