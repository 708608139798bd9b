-- Deletes up to $2 idempotency records created before $1 (their 24-hour window is over);
-- returns how many.
WITH gone AS (
    DELETE FROM idempotency_keys
    WHERE (scope, key) IN (
        SELECT scope, key FROM idempotency_keys WHERE created_at < $1 LIMIT $2
    )
    RETURNING 1
)
SELECT count(*) AS "count!" FROM gone
