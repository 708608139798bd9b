-- Creates a subscription; returns the stored row.
INSERT INTO subscriptions (id, name, target_url, secret_key, event_types, is_active, rate_limit, github_signature)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING id, name, target_url, secret_key AS "secret_key: _", event_types, is_active, created_at, updated_at,
       deleted_at, previous_secret_key AS "previous_secret_key: _", previous_secret_expires_at, rate_limit,
       github_signature, disabled_reason AS "disabled_reason: _", disabled_at
