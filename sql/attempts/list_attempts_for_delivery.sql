-- A delivery's attempts in order; $2 (the delivery's creation time) prunes older partitions.
-- An attempt's time is the sending instance's clock and the delivery's the database's: an
-- hour's margin keeps a first attempt sent milliseconds after the insert, by a host whose
-- clock runs behind the database's, in the list (it costs at most one more partition's
-- index look-up, just after midnight).
SELECT delivery_id, subscription_id, attempt_number, outcome AS "outcome: _", status_code, error, duration_ms, response_excerpt,
       target_url, created_at
FROM attempts
WHERE delivery_id = $1 AND created_at >= $2::timestamptz - interval '1 hour'
ORDER BY attempt_number
