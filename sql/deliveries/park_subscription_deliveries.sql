-- Parks up to $2 waiting deliveries of paused subscription $1 ('infinity' keeps them out of
-- claims). Batched (src/delivery/backlog.rs). The rows are picked and locked first, and
-- rechecked once locked: one claimed meanwhile is left alone. Then they are updated by id:
-- picked as an array, whatever the statistics say (a join to the picked rows was planned
-- as a hash join over the whole table once the queue's statistics were fresh).
UPDATE deliveries
SET next_attempt_at = 'infinity', parked_at = now()
WHERE id = ANY(ARRAY(
    SELECT id FROM deliveries
    WHERE subscription_id = $1 AND status IN ('queued', 'retrying') AND next_attempt_at < 'infinity'
    -- The due index's order: with statistics where this subscription is much of the table,
    -- a batch without it was planned as a scan of the table, expected to meet its rows early.
    ORDER BY next_attempt_at, id
    LIMIT $2
    FOR UPDATE
))
