-- Fails deliveries parked (subscription inactive) since before $1: they waited a whole
-- retention period. At most $2 rows per call; returns how many. Rows of a subscription
-- active again are left: their resume is under way in the background
-- (src/delivery/backlog.rs).
-- Read oldest-parked first through deliveries_parked_since_idx, so a pass reads the expired
-- rows only, not every parked one. The picks are locked (rows a resume is moving right now
-- are skipped: they are leaving) and rechecked once locked, then updated by id from an
-- array of them: a join to them, or the recheck repeated on the update, was planned on the
-- statistics of an empty queue as a scan of every parked row.
WITH expired AS (
    UPDATE deliveries
    SET status = 'failed', next_attempt_at = NULL, completed_at = now(),
        last_error = 'expired_while_subscription_inactive'
    WHERE id = ANY(ARRAY(
        SELECT id FROM deliveries
        WHERE status IN ('queued', 'retrying') AND next_attempt_at = 'infinity'
          AND COALESCE(parked_at, created_at) < $1
          AND NOT EXISTS (SELECT 1 FROM subscriptions AS s WHERE s.id = deliveries.subscription_id AND s.is_active)
        ORDER BY COALESCE(parked_at, created_at)
        LIMIT $2
        FOR UPDATE SKIP LOCKED
    ))
    RETURNING 1
)
SELECT count(*) AS "count!" FROM expired
