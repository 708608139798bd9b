-- Records many ingested webhooks in one statement (group commit): element i of each array
-- describes delivery i. Status is 'queued' (due now) or 'filtered' (finished at once).
INSERT INTO deliveries (id, subscription_id, event_type, body, status, next_attempt_at, completed_at)
SELECT d.id, d.subscription_id, d.event_type, d.body, d.status,
       CASE WHEN d.status = 'queued' THEN now() END,
       CASE WHEN d.status = 'filtered' THEN now() END
FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bytea[], $5::text[])
    AS d(id, subscription_id, event_type, body, status)
