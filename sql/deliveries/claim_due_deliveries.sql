-- Claims up to $1 due deliveries, oldest due first, including ones whose lease expired.
-- Each claimed row becomes 'delivering' under lease $3 until now() + $2 seconds, and its
-- attempt_count counts the attempt about to be made. SKIP LOCKED lets concurrent
-- claimers (other workers, other instances) take disjoint rows without waiting.
--
-- Room (src/delivery/scheduler.rs): $4/$5 list the subscriptions this instance knows
-- (deliveries claimed lately) and how many more each may have claimed; $6 is where each
-- one's due rows start (NULL: from its first). Any other subscription with unfinished
-- deliveries has room $7 (the small share).
--
-- Why per subscription: a claim that read due rows in due order had to step over every
-- row of a subscription with no room (a receiver that hangs keeps its whole backlog due),
-- so one hanging customer made every claim, and every other customer's latency, grow with
-- its backlog. Here the rows are read through deliveries_subscription_due_idx
-- (subscription_id, next_attempt_at, id), each subscription with room on its own, at most
-- its room and an equal share of the batch: a subscription without room costs nothing,
-- whatever it has waiting, and a paused one (rows due 'infinity') one index descent.
-- The other subscriptions with unfinished deliveries are found by a skip scan of that index
-- (one descent each, `others`) that runs only in the gaps between the known subscriptions
-- (`gaps`): it never steps through a known subscription's entries, of which a busy one has
-- many left behind by rows claimed or finished since the last vacuum (only a gap that ends
-- at one steps over the dead entries at its start; PostgreSQL skips those without reading
-- their rows). For the same reason a known subscription is read from $6, where the
-- previous claim found its earliest due row less a margin; the claim loop rescans from the
-- start every second, so a row committed late with an older due time waits at most that
-- long. Run on a connection set up by sql/deliveries/prefer_claim_index.sql, on its own
-- (one statement, its own transaction).
-- The gap bounds use the nil and the max UUID as "before the first" and "after the last":
-- subscription ids are UUIDv7 made by the service, never either.
--
-- Each claimed row also carries when it became due (due_at: the lag metric and the next
-- scan position).
--
-- The claim commits without waiting for its WAL flush (synchronous_commit off for its own
-- transaction only): claims run one after another, and a flush each would cap the drain
-- rate. Losing a claim in a database crash only puts the row back in the queue as it was
-- (it may then be delivered twice, which at-least-once allows; its attempt is still
-- logged). Ingested webhooks and recorded outcomes are always flushed before they count.
WITH RECURSIVE relaxed AS (
    SELECT set_config('synchronous_commit', 'off', true)
), known AS (
    SELECT * FROM unnest($4::uuid[], $5::int[], $6::timestamptz[]) AS k(subscription_id, room, scan_from)
), gaps AS (
    SELECT lag(k.subscription_id, 1, '00000000-0000-0000-0000-000000000000') OVER (ORDER BY k.subscription_id) AS after,
           k.subscription_id AS before
    FROM known AS k
    UNION ALL
    SELECT COALESCE((SELECT k.subscription_id FROM known AS k ORDER BY k.subscription_id DESC LIMIT 1),
                    '00000000-0000-0000-0000-000000000000'),
           'ffffffff-ffff-ffff-ffff-ffffffffffff'
), others (subscription_id, before) AS (
    SELECT (SELECT d.subscription_id FROM deliveries AS d
            WHERE d.status IN ('queued', 'retrying', 'delivering') AND d.next_attempt_at < 'infinity'
              AND d.subscription_id > g.after AND d.subscription_id < g.before
            ORDER BY d.subscription_id, d.next_attempt_at, d.id LIMIT 1), g.before
    FROM gaps AS g
    UNION ALL
    SELECT (SELECT d.subscription_id FROM deliveries AS d
            WHERE d.status IN ('queued', 'retrying', 'delivering') AND d.next_attempt_at < 'infinity'
              AND d.subscription_id > o.subscription_id AND d.subscription_id < o.before
            ORDER BY d.subscription_id, d.next_attempt_at, d.id LIMIT 1), o.before
    FROM others AS o
    WHERE o.subscription_id IS NOT NULL
), with_room AS (
    SELECT k.subscription_id, k.room, k.scan_from FROM known AS k WHERE k.room > 0
    UNION ALL
    SELECT o.subscription_id, $7::int, NULL FROM others AS o WHERE o.subscription_id IS NOT NULL AND $7::int > 0
), heads AS (
    -- The subscriptions with room that have something due, and the first row each has due.
    -- Every read of one subscription's rows below names it by equality and bounds the due
    -- time on its own column: the index scan then starts at the lower bound and stops at
    -- the upper one. Written as row comparisons, `(subscription_id, next_attempt_at) >=
    -- (s, t)`, the bounds looked the same but PostgreSQL 15 started at the subscription's
    -- first entry and stopped only at its last (it positions by the equality, and a row
    -- comparison decided by its second column does not end a scan): every claim stepped over
    -- all the entries that claimed and finished rows leave until vacuum (964 pages for a
    -- claim of one row after a drain of 20,000, 42 since: claim_isolation.rs).
    SELECT r.subscription_id, r.room, f.next_attempt_at, f.id
    FROM with_room AS r
    CROSS JOIN LATERAL (
        SELECT d.next_attempt_at, d.id
        FROM deliveries AS d
        WHERE d.status IN ('queued', 'retrying', 'delivering') AND d.next_attempt_at < 'infinity'
          AND d.subscription_id = r.subscription_id
          AND d.next_attempt_at >= COALESCE(r.scan_from, '-infinity') AND d.next_attempt_at <= now()
        ORDER BY d.subscription_id, d.next_attempt_at, d.id
        LIMIT 1
    ) AS f
), shares AS (
    -- Each of them may fill an equal share of the batch, at most its room: a claim reads
    -- about as many rows as it asks for however many subscriptions have due work, rather
    -- than each one's whole room to keep the oldest of all.
    SELECT h.*, LEAST(h.room, ceil($1::int8::numeric / count(*) OVER ())::int) AS take
    FROM heads AS h
), picked AS (
    -- Each subscription's due rows in order from its first, up to its share, in one read
    -- of deliveries_subscription_due_idx per subscription. The ORDER BY is all three keys
    -- of that index, and the subscription is the outer row's (not a constant), so no
    -- other index gives this order without a sort, and the transaction allows none
    -- (prefer_claim_index.sql): the planner cannot read all of a subscription's rows and
    -- sort them, nor, while deliveries_due_idx existed (until migration 33), read that in
    -- due order and filter by subscription (it did both before sorts were ruled out,
    -- depending on the statistics; claim_isolation.rs checks the rows read). It used to take one row per index descent, which made a claim of 64
    -- rows of one subscription cost 9.5 ms instead of 2.
    -- Rows are locked as they are read, and rows another claimer holds are skipped: the
    -- read goes on to the next ones, so claimers working on the same subscription (other
    -- instances) take its next rows side by side. When rows were chosen first and locked
    -- afterwards, the second of two claimers chose the rows the first had just locked and
    -- came back with nothing: two instances delivered less than one. A row another
    -- claimer took or finished meanwhile no longer passes the check, made again on the
    -- row's latest version once it is locked (a claimed row's lease ends in the future, a
    -- finished one has no due time). Rows locked beyond the batch (at most one per
    -- subscription, see `take`) are let go at commit.
    SELECT s.subscription_id, f.next_attempt_at, f.id
    FROM shares AS s
    CROSS JOIN LATERAL (
        SELECT d.next_attempt_at, d.id
        FROM deliveries AS d
        WHERE d.status IN ('queued', 'retrying', 'delivering') AND d.next_attempt_at < 'infinity'
          AND d.subscription_id = s.subscription_id
          AND (d.next_attempt_at, d.id) >= (s.next_attempt_at, s.id) AND d.next_attempt_at <= now()
        ORDER BY d.subscription_id, d.next_attempt_at, d.id
        LIMIT s.take
        FOR UPDATE OF d SKIP LOCKED
    ) AS f
), candidates AS (
    SELECT p.id, p.subscription_id, p.next_attempt_at
    FROM picked AS p
    ORDER BY p.next_attempt_at
    LIMIT $1
), more AS (
    -- More may be due: the batch is full, or a subscription took its whole share and had
    -- room for more (one that took all the room it was planned with, at most a cap's worth,
    -- is full now or still has room: the claim loop sees to it).
    SELECT (SELECT count(*) FROM candidates) >= $1
           OR EXISTS (SELECT 1 FROM shares AS s
                      WHERE s.take < s.room
                        AND (SELECT count(*) FROM candidates AS c WHERE c.subscription_id = s.subscription_id) >= s.take)
           AS more
), claimed AS (
    UPDATE deliveries AS d
    SET status = 'delivering',
        attempt_count = d.attempt_count + 1,
        lease_id = $3,
        next_attempt_at = now() + make_interval(secs => $2::float8)
    FROM relaxed
    -- A primary-key lookup whatever the statistics say: `= ANY(ARRAY(...))` rules out a
    -- semi-join planned as a scan per chosen row (see migration 7).
    WHERE d.id = ANY (ARRAY(SELECT id FROM candidates))
    RETURNING d.id, d.subscription_id, d.event_type, d.event_id, d.attempt_count,
              d.round_start_attempt
)
-- One row per claimed delivery, or one row with no delivery when nothing was claimed: each
-- carries whether more may be due (more) and, if not, when the loop should look again
-- (next_due_at): the earliest delivery of a subscription with room due after now, read in
-- the same way (NULL: none; rows still due now were taken, are another claimer's, or lie
-- behind a scan position, which the loop's rescan finds). Full subscriptions are left out
-- on purpose: their due rows would make it "now", and the loop waits for their room
-- instead. Parked rows (due 'infinity') are never due. It looks no further than $8 seconds
-- ahead (the longest the loop sleeps anyway): every row claimed in the last lease's length
-- left an entry at its lease's end, ahead of now and dead once its outcome was recorded,
-- and until vacuum removes them a look to the end of the subscription stepped over all of
-- them: after a drain of 100,000 on stock autovacuum, 2 ms per claim of one row, p99
-- 24 ms at 200/s.
-- A body is always stored, one way or the other; should one ever be missing, an empty body
-- is sent rather than the claim failing for every delivery behind it.
SELECT c.id, c.subscription_id, c.event_type, COALESCE(b.body, e.payload, ''::bytea) AS body,
       c.attempt_count, c.round_start_attempt, k.next_attempt_at AS due_at,
       s.more, s.next_due_at
FROM (
    SELECT m.more,
           CASE WHEN NOT m.more THEN (
               SELECT min(f.next_attempt_at)
               FROM with_room AS r
               LEFT JOIN (SELECT c.subscription_id, count(*) AS taken FROM candidates AS c GROUP BY c.subscription_id) AS t
                   ON t.subscription_id = r.subscription_id
               CROSS JOIN LATERAL (
                   SELECT d.next_attempt_at
                   FROM deliveries AS d
                   WHERE d.status IN ('queued', 'retrying', 'delivering') AND d.next_attempt_at < 'infinity'
                     AND d.subscription_id = r.subscription_id
                     AND d.next_attempt_at > now() AND d.next_attempt_at < now() + make_interval(secs => $8::float8)
                   ORDER BY d.subscription_id, d.next_attempt_at, d.id
                   LIMIT 1
               ) AS f
               -- Not those this claim filled: the loop waits for their room, or claims
               -- again at once for those that still have some. Reading them here stepped over the entries their claimed rows
               -- leave behind at the lease's end (dead ones too, until vacuum): 2.5 ms of
               -- each 64-row claim during a drain of one subscription.
               WHERE r.room > COALESCE(t.taken, 0)
           ) END AS next_due_at
    FROM more AS m
) AS s
LEFT JOIN claimed AS c ON true
LEFT JOIN candidates AS k ON k.id = c.id
LEFT JOIN delivery_bodies AS b ON b.delivery_id = c.id
LEFT JOIN events AS e ON e.id = c.event_id
