-- Deletes up to $2 fan-out events created before $1 (and at or after $3, when given) that no
-- delivery refers to any more; returns how many. $3 is where the previous complete sweep of
-- this process ended: events older than that were checked then, and one referred to then
-- goes with its last delivery (delete_finished_deliveries.sql). Without it every pass probed
-- every old event still referred to (a failing customer's long retries keep a day of its
-- fan-out events referred to past the cutoff). COALESCE keeps the bound a range on
-- events_created_idx in a generic plan too.
WITH gone AS (
    DELETE FROM events
    WHERE id IN (
        SELECT e.id FROM events AS e
        WHERE e.created_at < $1
          AND e.created_at >= COALESCE($3::timestamptz, '-infinity')
          AND NOT EXISTS (SELECT 1 FROM deliveries AS d WHERE d.event_id = e.id)
        LIMIT $2
    )
    RETURNING 1
)
SELECT count(*) AS "count!" FROM gone
