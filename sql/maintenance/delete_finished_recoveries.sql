-- Deletes up to $2 recoveries that finished before $1 (kept as long as deliveries are);
-- returns how many. Served by recoveries_completed_idx.
WITH finished AS (
    DELETE FROM recoveries
    WHERE id IN (
        SELECT id FROM recoveries
        WHERE status = 'done' AND completed_at < $1
        ORDER BY completed_at
        LIMIT $2
    )
    RETURNING 1
)
SELECT count(*) AS "count!" FROM finished
