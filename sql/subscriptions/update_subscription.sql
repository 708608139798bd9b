-- Replaces a live subscription's fields; locks its row; returns the new row, or nothing.
-- $8: the client set secret_key (to a value or null). That revokes every earlier secret at
-- once, including one still in a rotation overlap: only rotate-secret keeps an overlap.
UPDATE subscriptions
SET name = $2, target_url = $3, secret_key = $4, event_types = $5, is_active = $6, rate_limit = $7,
    github_signature = $9,
    -- Re-activating a disabled subscription clears why it was disabled.
    disabled_reason = CASE WHEN $6 THEN NULL ELSE disabled_reason END,
    disabled_at = CASE WHEN $6 THEN NULL ELSE disabled_at END,
    -- Resuming (inactive before, here is_active is the old value) starts a new failure
    -- streak: else the first failed attempt after a re-enable would disable it again. So
    -- does a new target (target_url here is the old one): the old URL's failures are not
    -- the new one's.
    failing_since = CASE WHEN ($6 AND NOT is_active) OR target_url <> $3 THEN NULL ELSE failing_since END,
    failed_in_streak = CASE WHEN ($6 AND NOT is_active) OR target_url <> $3 THEN 0 ELSE failed_in_streak END,
    previous_secret_key = CASE WHEN $8 THEN NULL ELSE previous_secret_key END,
    previous_secret_expires_at = CASE WHEN $8 THEN NULL ELSE previous_secret_expires_at END,
    updated_at = clock_timestamp()
WHERE id = $1 AND deleted_at IS NULL
RETURNING id, name, target_url, secret_key AS "secret_key: _", event_types, is_active, created_at, updated_at,
       deleted_at, previous_secret_key AS "previous_secret_key: _", previous_secret_expires_at, rate_limit,
       github_signature, disabled_reason AS "disabled_reason: _", disabled_at
