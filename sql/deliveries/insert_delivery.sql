-- Enqueues one webhook for one subscription, due now.
INSERT INTO deliveries (id, subscription_id, event_type, body, status, next_attempt_at)
VALUES ($1, $2, $3, $4, 'queued', now())
RETURNING created_at
