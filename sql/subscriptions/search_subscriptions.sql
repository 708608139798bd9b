-- Live subscriptions whose name matches $1 (a to_tsquery 'simple' prefix query built by
-- db::subscriptions::name_query), optionally in state $2 ('active', 'paused', 'disabled'),
-- after the cursor id $3, oldest first. Uses subscriptions_name_search_idx (GIN).
SELECT id, name, target_url, secret_key AS "secret_key: _", event_types, is_active, created_at, updated_at,
       deleted_at, previous_secret_key AS "previous_secret_key: _", previous_secret_expires_at, rate_limit,
       github_signature, disabled_reason AS "disabled_reason: _", disabled_at
FROM subscriptions
WHERE deleted_at IS NULL
  AND to_tsvector('simple', coalesce(name, '')) @@ to_tsquery('simple', $1)
  AND ($2::text IS NULL
       OR ($2 = 'active' AND is_active)
       OR ($2 = 'paused' AND NOT is_active AND disabled_reason IS NULL)
       OR ($2 = 'disabled' AND disabled_reason IS NOT NULL))
  AND ($3::uuid IS NULL OR id > $3)
ORDER BY id
LIMIT $4
