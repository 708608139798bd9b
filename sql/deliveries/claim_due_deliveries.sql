-- Claims up to $1 due deliveries, oldest due first, including ones whose lease expired.
-- Each claimed row becomes 'delivering' under lease $3 until now() + $2 seconds, and its
-- attempt_count counts the attempt about to be made. SKIP LOCKED lets concurrent
-- claimers (other workers, other instances) take disjoint rows without waiting.
--
-- Fairness: no subscription gets more than $6 deliveries claimed and unfinished on this
-- instance (see src/delivery/in_flight.rs). $4/$5 list the subscriptions this instance
-- knows about and how many they count as having; those at the limit ($8, listed apart so
-- that skipping them is an array test, not a subquery per row) are skipped, the others get
-- at most their remaining room in this batch. Subscriptions not listed (no recent
-- history here) start with room $7.
-- Bodies come from delivery_bodies; fan-out deliveries take theirs from their event.
--
-- Scan position: $9 is where the previous claim found the earliest due row, less a margin
-- (NULL: from the start). The claim index keeps an entry for every row claimed or
-- finished since the last vacuum, and all of them sit before the queue's head; starting
-- there steps over none of them. The claim loop rescans from the start every second, so a
-- row committed late with an older due time waits at most that long (see worker.rs).
-- Each returned row also carries when it became due (due_at, for the lag metric), where the
-- head was (scan_head) and how many due rows the claim looked at (considered).
--
-- The claim commits without waiting for its WAL flush (synchronous_commit off for this
-- transaction only): claims run one after another, and a flush each would cap the drain
-- rate. Losing a claim in a database crash only puts the row back in the queue as it was
-- (it may then be delivered twice, which at-least-once allows; its attempt is still
-- logged). Ingested webhooks and recorded outcomes are always flushed before they count.
WITH relaxed AS (
    SELECT set_config('synchronous_commit', 'off', true)
), busy AS (
    SELECT * FROM unnest($4::uuid[], $5::int[]) AS b(subscription_id, in_flight)
), head AS (
    SELECT d.next_attempt_at AS at
    FROM deliveries AS d
    WHERE d.status IN ('queued', 'retrying', 'delivering')
      AND d.next_attempt_at >= COALESCE($9::timestamptz, '-infinity') AND d.next_attempt_at <= now()
    ORDER BY d.next_attempt_at
    LIMIT 1
), candidates AS (
    -- Read without locking: rows that the room rule leaves out are never locked (a row
    -- lock is a heap write and a WAL record), which matters when one subscription's
    -- backlog fills the look-ahead but it has room for only a few more.
    SELECT d.id, d.subscription_id, d.next_attempt_at
    FROM deliveries AS d
    WHERE d.status IN ('queued', 'retrying', 'delivering')
      AND d.next_attempt_at >= (SELECT at FROM head) AND d.next_attempt_at <= now()
      AND d.subscription_id <> ALL ($8::uuid[])
    ORDER BY d.next_attempt_at
    LIMIT $1
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
), locked AS (
    -- Lock what was chosen; rows another claimer holds are skipped, and a row another
    -- claimer took or finished meanwhile no longer passes the check, made again on the
    -- row's latest version once it is locked: a claimed row's lease ends in the future, a
    -- finished one has no due time (migration 7).
    -- Both this and the UPDATE must be primary-key lookups whatever the statistics say:
    -- `= ANY(ARRAY(...))` rules out a semi-join planned as a scan per chosen row, and the
    -- check deliberately leaves `status` out, which keeps deliveries_due_idx out of the
    -- plan (the planner sizes that index by the last ANALYZE, usually of an empty queue,
    -- and would scan the whole backlog through it; see migration 7).
    SELECT d.id
    FROM deliveries AS d
    WHERE d.id = ANY (ARRAY(SELECT id FROM due)) AND d.next_attempt_at <= now()
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE deliveries AS d
    SET status = 'delivering',
        attempt_count = d.attempt_count + 1,
        lease_id = $3,
        next_attempt_at = now() + make_interval(secs => $2)
    FROM relaxed
    WHERE d.id = ANY (ARRAY(SELECT id FROM locked))
    RETURNING d.id, d.subscription_id, d.event_type, d.event_id, d.attempt_count,
              d.round_start_attempt
)
-- A body is always stored, one way or the other; should one ever be missing, an empty body
-- is sent rather than the claim failing for every delivery behind it.
SELECT c.id, c.subscription_id, c.event_type, COALESCE(b.body, e.payload, ''::bytea) AS body,
       c.attempt_count, c.round_start_attempt, k.next_attempt_at AS due_at,
       (SELECT at FROM head) AS scan_head, (SELECT count(*) FROM candidates) AS considered
FROM claimed AS c
JOIN candidates AS k ON k.id = c.id
LEFT JOIN delivery_bodies AS b ON b.delivery_id = c.id
LEFT JOIN events AS e ON e.id = c.event_id
