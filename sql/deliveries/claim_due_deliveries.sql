-- Claims up to $1 due deliveries, oldest due first, including ones whose lease expired.
-- Each claimed row becomes 'delivering' under lease $3 until now() + $2 seconds, and its
-- attempt_count counts the attempt about to be made. SKIP LOCKED lets concurrent
-- claimers (other workers, other instances) take disjoint rows without waiting.
--
-- Fairness: no subscription gets more than $6 deliveries in flight on this instance.
-- $4/$5 list the subscriptions this instance knows about and how many slots they count as
-- using; those at the cap are skipped, the others get at most their remaining room in this
-- batch. Subscriptions not listed (no recent history here) start with room $7.
-- Fan-out deliveries take their body from their event.
WITH busy AS (
    SELECT * FROM unnest($4::uuid[], $5::int[]) AS b(subscription_id, in_flight)
), candidates AS (
    SELECT d.id, d.subscription_id, d.next_attempt_at
    FROM deliveries AS d
    WHERE d.status IN ('queued', 'retrying', 'delivering') AND d.next_attempt_at <= now()
      AND d.subscription_id <> ALL (SELECT subscription_id FROM busy WHERE in_flight >= $6)
    ORDER BY d.next_attempt_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
), due AS (
    SELECT ranked.id
    FROM (
        SELECT c.id, c.next_attempt_at,
               row_number() OVER (PARTITION BY c.subscription_id ORDER BY c.next_attempt_at) AS rank,
               CASE WHEN b.subscription_id IS NULL THEN $7 ELSE $6 - b.in_flight END AS room
        FROM candidates AS c
        LEFT JOIN busy AS b ON b.subscription_id = c.subscription_id
    ) AS ranked
    WHERE ranked.rank <= ranked.room
    ORDER BY ranked.next_attempt_at
    LIMIT $1
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
