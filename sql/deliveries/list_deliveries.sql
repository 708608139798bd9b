-- The newest deliveries before the cursor id $1 and at or after the floor id $6 (either
-- NULL: unbounded), optionally of subscription $2, in status $3 and of event type $4, for
-- the dashboard's delivery list. Ids are UUIDv7 (time-ordered), so the primary key walked
-- backwards gives newest first and LIMIT stops the walk early; with a subscription the
-- planner may use deliveries_subscription_idx instead. A filter that matches rarely would
-- walk the whole history back: without a subscription, the caller bounds it with a floor
-- (search_window_floor.sql). The id bounds are ranges even when NULL, so that a generic
-- plan keeps them index conditions.
SELECT id, subscription_id, event_type, event_id AS "event_id: _", status AS "status: _", attempt_count,
       NULLIF(next_attempt_at, 'infinity') AS next_attempt_at, last_error,
       created_at, completed_at
FROM deliveries
WHERE id < COALESCE($1::uuid, 'ffffffff-ffff-ffff-ffff-ffffffffffff')
  AND id >= COALESCE($6::uuid, '00000000-0000-0000-0000-000000000000')
  AND ($2::uuid IS NULL OR subscription_id = $2)
  AND ($3::text IS NULL OR status = $3)
  AND ($4::text IS NULL OR event_type = $4)
ORDER BY id DESC
LIMIT $5
