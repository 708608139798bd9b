-- Locks running recovery $1 for one batch, or returns nothing if it is done or another
-- instance is running a batch of it right now (SKIP LOCKED: that instance goes on with it).
SELECT id, subscription_id, since, until, status AS "status: _", matched, requeued, cursor_created_at, cursor_id, created_at, completed_at
FROM recoveries
WHERE id = $1 AND status = 'running'
FOR UPDATE SKIP LOCKED
