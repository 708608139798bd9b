-- Live subscriptions optionally in state $1 ('active', 'paused', 'disabled'), after the
-- cursor id $2, oldest first: the dashboard's list without a search. Walks the primary key.
SELECT id, name, target_url, secret_key AS "secret_key: _", event_types, is_active, created_at, updated_at,
       deleted_at, previous_secret_key AS "previous_secret_key: _", previous_secret_expires_at, rate_limit,
       github_signature, disabled_reason AS "disabled_reason: _", disabled_at
FROM subscriptions
WHERE deleted_at IS NULL
  AND ($1::text IS NULL
       OR ($1 = 'active' AND is_active)
       OR ($1 = 'paused' AND NOT is_active AND disabled_reason IS NULL)
       OR ($1 = 'disabled' AND disabled_reason IS NOT NULL))
  AND ($2::uuid IS NULL OR id > $2)
ORDER BY id
LIMIT $3
