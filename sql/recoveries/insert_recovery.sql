-- Starts a recovery of subscription $2's failed deliveries created in [$3, $4), $5 of them
-- counted; its cursor starts just before the range (the nil uuid sorts first).
INSERT INTO recoveries (id, subscription_id, since, until, matched, cursor_created_at, cursor_id)
VALUES ($1, $2, $3, $4, $5, $3, '00000000-0000-0000-0000-000000000000')
RETURNING id, subscription_id, since, until, status AS "status: _", matched, requeued, cursor_created_at, cursor_id, created_at, completed_at
