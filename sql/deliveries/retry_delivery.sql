-- Re-queues a finished (succeeded or failed) delivery of a live, active subscription for a
-- fresh round of attempts; attempt numbers continue. Returns its id, or nothing if it is
-- not finished or its subscription is deleted or inactive (a deleted one's delivery would
-- be cancelled, its history rewritten as failed; a paused one's only parked).
UPDATE deliveries AS d
SET status = 'queued', next_attempt_at = now(), completed_at = NULL, last_error = NULL,
    round_start_attempt = d.attempt_count
FROM subscriptions AS s
WHERE d.id = $1 AND d.status IN ('succeeded', 'failed')
  AND s.id = d.subscription_id AND s.deleted_at IS NULL AND s.is_active
RETURNING d.id
