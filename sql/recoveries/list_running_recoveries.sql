-- Ids of up to $1 unfinished recoveries that can make progress, oldest first
-- (recoveries_running_idx): every delivering instance works on them, a batch at a time,
-- until they are done. A recovery of a paused or disabled subscription waits, and must not
-- take one of the $1 places: a hundred of them would starve every newer recovery. One of a
-- deleted (or purged) subscription is listed, to be ended.
SELECT r.id
FROM recoveries AS r
LEFT JOIN subscriptions AS s ON s.id = r.subscription_id
WHERE r.status = 'running' AND (s.id IS NULL OR s.is_active OR s.deleted_at IS NOT NULL)
ORDER BY r.created_at
LIMIT $1
