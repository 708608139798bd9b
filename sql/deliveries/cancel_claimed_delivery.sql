-- Ends one claimed delivery as failed without an attempt (its subscription was deleted).
-- Holding the lease implies being 'delivering' (migration 7; see record_attempts.sql).
UPDATE deliveries
SET status = 'failed', attempt_count = attempt_count - 1, next_attempt_at = NULL,
    lease_id = NULL, completed_at = now(), last_error = $3
WHERE id = $1 AND lease_id = $2
