-- Re-queues a finished (succeeded or failed) delivery for a fresh round of attempts;
-- attempt numbers continue. Returns its id, or nothing if it is not finished.
UPDATE deliveries
SET status = 'queued', next_attempt_at = now(), completed_at = NULL, last_error = NULL,
    round_start_attempt = attempt_count
WHERE id = $1 AND status IN ('succeeded', 'failed')
RETURNING id
