-- Takes up to $1 queued operational events, oldest first, deleting them; the caller fans
-- them out in the same transaction, so a crash before commit leaves them queued. SKIP
-- LOCKED lets every delivering instance relay at once without taking the same event.
DELETE FROM operational_events
WHERE id IN (
    SELECT id FROM operational_events
    ORDER BY id
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
RETURNING id, event_type, data::text AS "data!", created_at
