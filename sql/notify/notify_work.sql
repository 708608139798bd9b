-- Tells every instance's claim loop that new work is due (sent at most every 20 ms per
-- instance, outside the ingest transactions).
SELECT pg_notify('webhookd_work', '')
