-- Writes one subscription's secrets again, encrypted with the current key, only if they are
-- still what was read ($4, $5): a rotation or another instance starting at the same moment
-- wins, and its value is looked at on the next start. A previous secret dropped ($3 NULL:
-- it did not decrypt) takes its expiry with it. Returns whether the row changed.
UPDATE subscriptions
SET secret_key = $2, previous_secret_key = $3,
    previous_secret_expires_at = CASE WHEN $3::text IS NULL THEN NULL ELSE previous_secret_expires_at END
WHERE id = $1 AND secret_key IS NOT DISTINCT FROM $4 AND previous_secret_key IS NOT DISTINCT FROM $5
RETURNING id
