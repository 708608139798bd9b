-- Marks recovery $1 done (nothing is left after its cursor); returns it.
UPDATE recoveries
SET status = 'done', completed_at = now()
WHERE id = $1 AND status = 'running'
RETURNING id, subscription_id, since, until, status AS "status: _", matched, requeued, cursor_created_at, cursor_id, created_at, completed_at
