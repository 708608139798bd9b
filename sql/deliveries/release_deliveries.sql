-- Gives claimed deliveries back unattempted (shutdown, paused subscription): the attempt
-- counted at claim time is uncounted and the row is due again at $3 (NULL: parked until
-- its subscription is reactivated). Holding the lease implies being 'delivering'
-- (migration 7; see record_attempts.sql for why the status is not tested).
UPDATE deliveries
SET status = CASE WHEN attempt_count > 1 THEN 'retrying' ELSE 'queued' END,
    attempt_count = attempt_count - 1,
    lease_id = NULL,
    next_attempt_at = COALESCE($3::timestamptz, 'infinity'),
    parked_at = CASE WHEN $3::timestamptz IS NULL THEN now() END
WHERE id = ANY($1) AND lease_id = $2
