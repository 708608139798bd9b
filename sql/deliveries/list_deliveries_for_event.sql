-- The deliveries of one fan-out event.
SELECT id, subscription_id, event_type, event_id AS "event_id: _", status AS "status: _", attempt_count,
       NULLIF(next_attempt_at, 'infinity') AS next_attempt_at, last_error,
       created_at, completed_at
FROM deliveries
WHERE event_id = $1
ORDER BY subscription_id
