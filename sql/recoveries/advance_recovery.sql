-- Records one batch of recovery $1: $2 more deliveries re-queued, the last at position
-- ($3 created_at, $4 id), where the next batch starts.
UPDATE recoveries
SET requeued = requeued + $2, cursor_created_at = $3, cursor_id = $4
WHERE id = $1
