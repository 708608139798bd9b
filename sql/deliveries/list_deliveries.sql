-- The newest deliveries before the cursor id $1, optionally of subscription $2, in status
-- $3 and of event type $4, for the dashboard's delivery list. Ids are UUIDv7 (time-ordered),
-- so the primary key walked backwards gives newest first and LIMIT stops the walk early;
-- with a subscription the planner may use deliveries_subscription_idx instead. A filter
-- that matches rarely walks further back (bounded by retention).
SELECT id, subscription_id, event_type, event_id AS "event_id: _", status AS "status: _", attempt_count,
       NULLIF(next_attempt_at, 'infinity') AS next_attempt_at, last_error,
       created_at, completed_at
FROM deliveries
WHERE ($1::uuid IS NULL OR id < $1)
  AND ($2::uuid IS NULL OR subscription_id = $2)
  AND ($3::text IS NULL OR status = $3)
  AND ($4::text IS NULL OR event_type = $4)
ORDER BY id DESC
LIMIT $5
