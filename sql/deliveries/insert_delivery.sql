-- Records one webhook for one subscription: 'queued' (due now) or 'filtered' (finished,
-- never attempted). The body goes to delivery_bodies (see migration 6).
WITH body AS (
    INSERT INTO delivery_bodies (delivery_id, body) VALUES ($1, $4)
)
INSERT INTO deliveries (id, subscription_id, event_type, status, next_attempt_at, completed_at)
VALUES ($1, $2, $3, $5,
        CASE WHEN $5 = 'queued' THEN now() END,
        CASE WHEN $5 = 'filtered' THEN now() END)
RETURNING created_at
