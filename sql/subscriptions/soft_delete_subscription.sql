-- Marks a live subscription deleted; returns its id, or nothing if there was none.
UPDATE subscriptions
SET deleted_at = now(), is_active = false, updated_at = clock_timestamp()
WHERE id = $1 AND deleted_at IS NULL
RETURNING id
