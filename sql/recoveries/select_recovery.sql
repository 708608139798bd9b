-- One recovery and how far it got.
SELECT id, subscription_id, since, until, status AS "status: _", matched, requeued, cursor_created_at, cursor_id, created_at, completed_at
FROM recoveries
WHERE id = $1
