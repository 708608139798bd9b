-- Ends up to $2 unfinished deliveries of deleted subscription $1 as failed. Batched
-- (src/delivery/backlog.rs); rows picked and locked first, as in
-- park_subscription_deliveries.sql. Rows claimed right now are left to their worker, which
-- cancels them when it sees the subscription is gone.
-- The due time's two cases, spelled out, let PostgreSQL read the two partial indexes of
-- waiting rows (deliveries_subscription_due_idx, deliveries_parked_idx) instead of the
-- subscription's whole history through deliveries_subscription_idx.
UPDATE deliveries
SET status = 'failed', next_attempt_at = NULL, completed_at = now(),
    last_error = 'subscription_deleted'
WHERE id = ANY(ARRAY(
    SELECT id FROM deliveries
    WHERE subscription_id = $1 AND status IN ('queued', 'retrying')
      AND (next_attempt_at < 'infinity' OR next_attempt_at = 'infinity')
    LIMIT $2
    FOR UPDATE
))
