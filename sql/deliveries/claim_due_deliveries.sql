-- Claims up to $1 due deliveries, oldest due first, including ones whose lease expired.
-- Each claimed row becomes 'delivering' under lease $3 until now() + $2 seconds, and its
-- attempt_count counts the attempt about to be made. SKIP LOCKED lets concurrent
-- claimers (other workers, other instances) take disjoint rows without waiting.
-- Fan-out deliveries take their body from their event.
WITH due AS (
    SELECT id
    FROM deliveries
    WHERE status IN ('queued', 'retrying', 'delivering') AND next_attempt_at <= now()
    ORDER BY next_attempt_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE deliveries AS d
    SET status = 'delivering',
        attempt_count = d.attempt_count + 1,
        lease_id = $3,
        next_attempt_at = now() + make_interval(secs => $2)
    FROM due
    WHERE d.id = due.id
    RETURNING d.id, d.subscription_id, d.event_type, d.event_id, d.body, d.attempt_count,
              d.round_start_attempt
)
SELECT c.id, c.subscription_id, c.event_type, COALESCE(c.body, e.payload) AS body,
       c.attempt_count, c.round_start_attempt
FROM claimed AS c
LEFT JOIN events AS e ON e.id = c.event_id
