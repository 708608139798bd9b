-- Live subscriptions disabled by webhookd or in a run of failed attempts, most recent
-- trouble first, for the dashboard's overview. The table holds one row per endpoint (small);
-- a sequential scan, bounded by the LIMIT in what it returns.
SELECT id, name, target_url, disabled_reason AS "disabled_reason: _", disabled_at, failing_since, failed_in_streak
FROM subscriptions
WHERE deleted_at IS NULL AND (disabled_reason IS NOT NULL OR failing_since IS NOT NULL)
ORDER BY COALESCE(disabled_at, failing_since) DESC
LIMIT $1
