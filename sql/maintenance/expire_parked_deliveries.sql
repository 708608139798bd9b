-- Fails deliveries parked (subscription inactive) since before $1: they waited a whole
-- retention period. At most $2 rows per call; returns how many. Rows of a subscription
-- active again are left: their resume is under way in the background
-- (src/delivery/backlog.rs).
WITH expired AS (
    UPDATE deliveries
    SET status = 'failed', next_attempt_at = NULL, completed_at = now(),
        last_error = 'expired_while_subscription_inactive'
    WHERE id IN (
        SELECT id FROM deliveries
        WHERE status IN ('queued', 'retrying') AND next_attempt_at = 'infinity'
          AND COALESCE(parked_at, created_at) < $1
          AND NOT EXISTS (SELECT 1 FROM subscriptions AS s WHERE s.id = deliveries.subscription_id AND s.is_active)
        LIMIT $2
    )
      -- Checked again on the row updated: one resumed and claimed meanwhile stays.
      AND status IN ('queued', 'retrying') AND next_attempt_at = 'infinity'
    RETURNING 1
)
SELECT count(*) AS "count!" FROM expired
