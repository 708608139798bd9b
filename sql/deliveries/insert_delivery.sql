-- Records one webhook for one subscription: 'queued' (due now) or 'filtered' (finished,
-- never attempted).
INSERT INTO deliveries (id, subscription_id, event_type, body, status, next_attempt_at, completed_at)
VALUES ($1, $2, $3, $4, $5,
        CASE WHEN $5 = 'queued' THEN now() END,
        CASE WHEN $5 = 'filtered' THEN now() END)
RETURNING created_at
