-- Fails deliveries parked (subscription inactive) since before $1: they waited a whole
-- retention period. At most $2 rows per call; returns how many.
WITH expired AS (
    UPDATE deliveries
    SET status = 'failed', next_attempt_at = NULL, completed_at = now(),
        last_error = 'expired_while_subscription_inactive'
    WHERE id IN (
        SELECT id FROM deliveries
        WHERE status IN ('queued', 'retrying') AND next_attempt_at = 'infinity'
          AND COALESCE(parked_at, created_at) < $1
        LIMIT $2
    )
      -- Checked again on the row updated: one resumed and claimed meanwhile stays.
      AND status IN ('queued', 'retrying') AND next_attempt_at = 'infinity'
    RETURNING 1
)
SELECT count(*) AS "count!" FROM expired
