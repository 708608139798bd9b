-- Replaces a live subscription's secret with $2; the old one (if any) stays valid for $3
-- more seconds, unless $4 is false (it does not decrypt: it could verify and sign nothing).
-- Returns the new row, or nothing.
UPDATE subscriptions
SET previous_secret_key = CASE WHEN $4 THEN secret_key END,
    previous_secret_expires_at = CASE WHEN secret_key IS NULL OR NOT $4 THEN NULL
                                      ELSE now() + make_interval(secs => $3) END,
    secret_key = $2,
    updated_at = clock_timestamp()
WHERE id = $1 AND deleted_at IS NULL
RETURNING id, name, target_url, secret_key AS "secret_key: _", event_types, is_active, created_at, updated_at,
       deleted_at, previous_secret_key AS "previous_secret_key: _", previous_secret_expires_at, rate_limit,
       github_signature, disabled_reason AS "disabled_reason: _", disabled_at
