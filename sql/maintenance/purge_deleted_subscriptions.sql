-- Removes up to $2 subscriptions deleted before $1 that no delivery refers to any more;
-- returns how many.
WITH gone AS (
    DELETE FROM subscriptions
    WHERE id IN (
        SELECT s.id FROM subscriptions AS s
        WHERE s.deleted_at < $1
          AND NOT EXISTS (SELECT 1 FROM deliveries AS d WHERE d.subscription_id = s.id)
        LIMIT $2
    )
    RETURNING 1
)
SELECT count(*) AS "count!" FROM gone
