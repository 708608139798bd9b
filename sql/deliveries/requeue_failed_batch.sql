-- One batch of a bulk recovery: re-queues up to $6 of subscription $1's failed deliveries
-- created before $2, after position ($3 created_at, $4 id) in (created_at, id) order, each
-- for a fresh round of attempts exactly as a manual retry does (retry_delivery.sql): the id
-- stays, so receivers can deduplicate, and attempt numbers continue. If the subscription
-- was paused meanwhile ($5 false), they are re-queued parked. Returns the re-queued rows'
-- positions; the caller moves the recovery's cursor to the last one in the same transaction.
-- `created_at >= $3` bounds the scan of deliveries_failed_idx to what is left.
WITH picked AS (
    SELECT id
    FROM deliveries
    WHERE subscription_id = $1 AND status = 'failed'
      AND created_at >= $3 AND created_at < $2 AND (created_at, id) > ($3, $4)
    ORDER BY created_at, id
    LIMIT $6
    FOR UPDATE
)
UPDATE deliveries AS d
SET status = 'queued',
    next_attempt_at = CASE WHEN $5 THEN now() ELSE 'infinity' END,
    completed_at = NULL, last_error = NULL, round_start_attempt = attempt_count
FROM picked
WHERE d.id = picked.id AND d.status = 'failed'
RETURNING d.created_at, d.id
