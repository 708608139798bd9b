-- Deletes up to $2 finished deliveries completed before $1, oldest first, with their
-- bodies; returns how many deliveries went. Small batches in their own transactions keep
-- locks short; deliveries_finished_idx finds them. The status is checked again on the row
-- deleted, so a delivery re-queued by a manual retry meanwhile stays (with its body).
WITH finished AS (
    DELETE FROM deliveries
    WHERE id IN (
        SELECT id FROM deliveries
        WHERE status IN ('succeeded', 'failed', 'filtered') AND completed_at < $1
        ORDER BY completed_at
        LIMIT $2
    )
      AND status IN ('succeeded', 'failed', 'filtered')
    RETURNING id
), bodies AS (
    DELETE FROM delivery_bodies WHERE delivery_id IN (SELECT id FROM finished)
)
SELECT count(*) AS "count!" FROM finished
