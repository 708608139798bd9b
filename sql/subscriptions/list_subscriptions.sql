-- Live subscriptions after the cursor id ($1, NULL for the first page), oldest first.
SELECT id, name, target_url, secret_key AS "secret_key: _", event_types, is_active, created_at, updated_at,
       deleted_at, previous_secret_key AS "previous_secret_key: _", previous_secret_expires_at, rate_limit,
       github_signature, disabled_reason AS "disabled_reason: _", disabled_at
FROM subscriptions
WHERE deleted_at IS NULL AND ($1::uuid IS NULL OR id > $1)
ORDER BY id
LIMIT $2
