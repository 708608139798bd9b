-- Deletes up to $2 fan-out events older than $1 that no delivery refers to any more;
-- returns how many.
WITH gone AS (
    DELETE FROM events
    WHERE id IN (
        SELECT e.id FROM events AS e
        WHERE e.created_at < $1
          AND NOT EXISTS (SELECT 1 FROM deliveries AS d WHERE d.event_id = e.id)
        LIMIT $2
    )
    RETURNING 1
)
SELECT count(*) AS "count!" FROM gone
