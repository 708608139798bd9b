-- Records many ingested webhooks in one statement (group commit): element i of each array
-- describes delivery i. Status is 'queued' (due now) or 'filtered' (finished at once).
-- Bodies go to delivery_bodies, written once (see migration 6).
WITH received AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bytea[], $5::text[])
        AS d(id, subscription_id, event_type, body, status)
), bodies AS (
    INSERT INTO delivery_bodies (delivery_id, body)
    SELECT id, body FROM received
)
INSERT INTO deliveries (id, subscription_id, event_type, status, next_attempt_at, completed_at)
SELECT d.id, d.subscription_id, d.event_type, d.status,
       CASE WHEN d.status = 'queued' THEN now() END,
       CASE WHEN d.status = 'filtered' THEN now() END
FROM received AS d
