-- A delivery's attempts in order; $2 (the delivery's creation time) prunes older partitions.
SELECT delivery_id, subscription_id, attempt_number, outcome AS "outcome: _", status_code, error, duration_ms, response_excerpt,
       target_url, created_at
FROM attempts
WHERE delivery_id = $1 AND created_at >= $2
ORDER BY attempt_number
