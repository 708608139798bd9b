-- Ends a deleted subscription's unfinished deliveries as failed. Rows claimed right now are
-- left to their worker, which cancels them when it sees the subscription is gone.
UPDATE deliveries
SET status = 'failed', next_attempt_at = NULL, completed_at = now(),
    last_error = 'subscription_deleted'
WHERE subscription_id = $1 AND status IN ('queued', 'retrying')
