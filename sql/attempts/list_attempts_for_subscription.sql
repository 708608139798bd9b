-- A subscription's most recent attempts, newest first.
SELECT delivery_id, subscription_id, attempt_number, outcome AS "outcome: _", status_code, error, duration_ms,
       response_excerpt, target_url, created_at
FROM attempts
WHERE subscription_id = $1
ORDER BY created_at DESC
LIMIT $2
