-- Makes up to $2 parked deliveries of reactivated subscription $1 due now. Batched
-- (src/delivery/backlog.rs); rows picked and locked first, as in
-- park_subscription_deliveries.sql.
UPDATE deliveries
SET next_attempt_at = now()
WHERE id = ANY(ARRAY(
    SELECT id FROM deliveries
    WHERE subscription_id = $1 AND status IN ('queued', 'retrying') AND next_attempt_at = 'infinity'
    LIMIT $2
    FOR UPDATE
))
