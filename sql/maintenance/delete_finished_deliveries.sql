-- Deletes up to $2 finished deliveries completed before $1, oldest first, with their
-- bodies, and the fan-out events older than $1 that only they referred to; returns how many
-- deliveries and how many events went. Small batches in their own transactions keep locks short;
-- deliveries_finished_idx finds them. The status is checked again on the row deleted, so a
-- delivery re-queued by a manual retry meanwhile stays (with its body).
-- An event whose last delivery goes here goes with it: the orphan-event sweep looks only at
-- events that grew old since its last pass (delete_orphan_events.sql). The statement's
-- snapshot still sees the deliveries it deletes, hence their exclusion by id.
WITH finished AS (
    DELETE FROM deliveries
    WHERE id IN (
        SELECT id FROM deliveries
        WHERE status IN ('succeeded', 'failed', 'filtered') AND completed_at < $1
        ORDER BY completed_at
        LIMIT $2
    )
      AND status IN ('succeeded', 'failed', 'filtered')
    RETURNING id, event_id
), bodies AS (
    DELETE FROM delivery_bodies WHERE delivery_id IN (SELECT id FROM finished)
), events_gone AS (
    DELETE FROM events AS e
    WHERE e.id IN (SELECT event_id FROM finished WHERE event_id IS NOT NULL)
      AND e.created_at < $1
      AND NOT EXISTS (
          SELECT 1 FROM deliveries AS d
          WHERE d.event_id = e.id AND d.id NOT IN (SELECT id FROM finished)
      )
    RETURNING 1
)
SELECT (SELECT count(*) FROM finished) AS "count!", (SELECT count(*) FROM events_gone) AS "events!"
