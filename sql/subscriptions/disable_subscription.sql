-- Takes a live, active subscription out of service for reason $2 (see migration 9); returns
-- when, or nothing if it was already inactive or deleted (an admin's pause stands), or if
-- what decided it no longer holds:
-- - $3, the target the deciding attempt went to (a 410), is no longer the subscription's:
--   a retired URL answering 410 to an attempt still under way must not disable the new one;
-- - a failing streak has ended since (a success recorded by another instance, or a new
--   target, which starts a new streak).
UPDATE subscriptions
SET is_active = false, disabled_reason = $2, disabled_at = now(), updated_at = clock_timestamp()
WHERE id = $1 AND deleted_at IS NULL AND is_active
  AND ($3::text IS NULL OR target_url = $3)
  AND ($2 <> 'failing' OR failing_since IS NOT NULL)
RETURNING disabled_at AS "disabled_at!"
