-- Waits until every earlier try of outcome batch $1 has ended on the server (committed or
-- rolled back): each holds the batch's advisory lock until then (record_attempts.sql, $18).
-- Taken and let go at once (this statement's own transaction).
SELECT pg_advisory_xact_lock($1)
