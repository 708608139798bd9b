-- Waits until every earlier try of batch $1 has ended on the server (committed or rolled
-- back): each holds the batch's advisory lock until then, an outcome batch
-- (record_attempts.sql, $18) as an ingest batch (insert_deliveries.sql, $9) and an event's
-- fan-out (sql/events/insert_event.sql, $4). Taken and let
-- go at once (this statement's own transaction), and in a statement of its own: a look at
-- what the earlier try wrote must take its snapshot after this wait, not before.
SELECT pg_advisory_xact_lock($1)
