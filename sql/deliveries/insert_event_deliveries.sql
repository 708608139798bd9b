-- Queues one delivery of event $4 (type $3) per subscription, due now; the body is the
-- event's payload, stored once in events.
INSERT INTO deliveries (id, subscription_id, event_type, event_id, status, next_attempt_at)
SELECT d.id, d.subscription_id, $3, $4, 'queued', now()
FROM unnest($1::uuid[], $2::uuid[]) AS d(id, subscription_id)
