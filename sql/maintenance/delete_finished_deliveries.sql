-- Deletes up to $2 finished deliveries completed before $1, oldest first. Small batches in
-- their own transactions keep locks short; deliveries_finished_idx finds them.
DELETE FROM deliveries
WHERE id IN (
    SELECT id FROM deliveries
    WHERE status IN ('succeeded', 'failed', 'filtered') AND completed_at < $1
    ORDER BY completed_at
    LIMIT $2
)
