-- A subscription's most recent deliveries in the status $2, `failed` or `filtered`, newest
-- first, through that status's partial index (deliveries_failed_idx,
-- deliveries_filtered_idx): found however rare they are in the subscription's history,
-- which list_deliveries_for_subscription.sql walks (a whole history for a status it never
-- finds). One branch per status with the status written out, so that a generic plan still
-- proves its index's predicate; the other branch is skipped by its one-time filter. The
-- union leaves every column nullable as sqlx infers it: the outer list says which are not.
SELECT id AS "id!", subscription_id AS "subscription_id!", event_type, event_id AS "event_id: _",
       status AS "status!: _", attempt_count AS "attempt_count!", next_attempt_at, last_error,
       created_at AS "created_at!", completed_at
FROM (
    (SELECT id, subscription_id, event_type, event_id, status, attempt_count, next_attempt_at, last_error, created_at, completed_at
     FROM deliveries
     WHERE subscription_id = $1 AND status = 'failed' AND $2::text = 'failed'
     ORDER BY created_at DESC
     LIMIT $3)
    UNION ALL
    (SELECT id, subscription_id, event_type, event_id, status, attempt_count, next_attempt_at, last_error, created_at, completed_at
     FROM deliveries
     WHERE subscription_id = $1 AND status = 'filtered' AND $2::text = 'filtered'
     ORDER BY created_at DESC
     LIMIT $3)
) AS rare
ORDER BY created_at DESC
LIMIT $3
