-- Forgets a key whose 24-hour window has passed, so it can be used afresh.
DELETE FROM idempotency_keys
WHERE scope = $1 AND key = $2 AND created_at < now() - interval '24 hours'
