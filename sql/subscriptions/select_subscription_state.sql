-- Whether subscription $1 is active and whether it is deleted (no row: purged).
SELECT is_active, deleted_at IS NOT NULL AS "deleted!"
FROM subscriptions
WHERE id = $1
