-- Takes a live, active subscription out of service for reason $2 (see migration 9); returns
-- when, or nothing if it was already inactive or deleted (an admin's pause stands).
UPDATE subscriptions
SET is_active = false, disabled_reason = $2, disabled_at = now(), updated_at = now()
WHERE id = $1 AND deleted_at IS NULL AND is_active
RETURNING disabled_at AS "disabled_at!"
