-- Ends up to $2 unfinished deliveries of deleted subscription $1 as failed. Batched
-- (src/delivery/backlog.rs); rows picked and locked first, as in
-- park_subscription_deliveries.sql. Rows claimed right now are left to their worker, which
-- cancels them when it sees the subscription is gone.
-- Due rows first, then parked ones for what is left of the batch, each read in order
-- through its own partial index (deliveries_subscription_due_idx, deliveries_parked_idx)
-- and stopped at the limit: one condition over both (an OR) was read as a bitmap of every
-- waiting row of the subscription at each batch, a million parked rows per batch of 1,000.
WITH due AS (
    SELECT id FROM deliveries
    WHERE subscription_id = $1 AND status IN ('queued', 'retrying') AND next_attempt_at < 'infinity'
    -- The index's order: a small batch is never read by a scan of the table instead.
    ORDER BY next_attempt_at, id
    LIMIT $2
    FOR UPDATE
), parked AS (
    SELECT id FROM deliveries
    WHERE subscription_id = $1 AND status IN ('queued', 'retrying') AND next_attempt_at = 'infinity'
    LIMIT $2 - (SELECT count(*) FROM due)
    FOR UPDATE
)
UPDATE deliveries
SET status = 'failed', next_attempt_at = NULL, completed_at = now(),
    last_error = 'subscription_deleted'
WHERE id = ANY(ARRAY(SELECT id FROM due UNION ALL SELECT id FROM parked))
