-- One batch of a bulk recovery: re-queues, due now, up to $5 of subscription $1's failed
-- deliveries created before $2 and failed by $6 (when the recovery started: what fails
-- later, even a delivery of the range re-queued by hand meanwhile, is not this recovery's),
-- after position ($3 created_at, $4 id) in (created_at, id) order. Each gets a fresh round
-- of attempts exactly as a manual retry does (retry_delivery.sql): the id stays, so
-- receivers can deduplicate, and attempt numbers continue. Returns the re-queued rows'
-- positions; the caller moves the recovery's cursor to the last one in the same transaction.
-- deliveries_failed_idx serves the range and the row comparison.
WITH picked AS (
    SELECT id
    FROM deliveries
    WHERE subscription_id = $1 AND status = 'failed'
      AND created_at < $2 AND (created_at, id) > ($3, $4) AND completed_at <= $6
    ORDER BY created_at, id
    LIMIT $5
    FOR UPDATE
)
UPDATE deliveries AS d
SET status = 'queued', next_attempt_at = now(), completed_at = NULL, last_error = NULL,
    round_start_attempt = attempt_count
FROM picked
WHERE d.id = picked.id AND d.status = 'failed'
RETURNING d.created_at, d.id
