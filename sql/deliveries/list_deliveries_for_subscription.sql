-- A subscription's most recent deliveries, optionally of one status ($2), newest first.
SELECT id, subscription_id, event_type, event_id AS "event_id: _", status AS "status: _", attempt_count,
       NULLIF(next_attempt_at, 'infinity') AS next_attempt_at, last_error,
       created_at, completed_at
FROM deliveries
WHERE subscription_id = $1 AND ($2::text IS NULL OR status = $2)
ORDER BY created_at DESC
LIMIT $3
