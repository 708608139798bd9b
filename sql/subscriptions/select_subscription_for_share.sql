-- Reads subscription $1 and keeps it from changing until the transaction ends (a recovery
-- batch: a pause or delete then waits for the batch, or the batch sees it).
SELECT id, name, target_url, secret_key AS "secret_key: _", event_types, is_active, created_at, updated_at,
       deleted_at, previous_secret_key AS "previous_secret_key: _", previous_secret_expires_at, rate_limit,
       github_signature, disabled_reason AS "disabled_reason: _", disabled_at
FROM subscriptions
WHERE id = $1
FOR SHARE
