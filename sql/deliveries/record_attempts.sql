-- Records many finished attempts in one statement: each attempt's log row is appended
-- (even when its lease was lost: the request really was sent), and each delivery takes its
-- new state only if lease $2 is still held. $3 is the new status, $4 the next due time
-- (NULL once finished), $5 the last error; $6.. are the attempt log columns.
-- Returns the ids of the deliveries that were updated (in `id`). Holding the lease implies
-- being 'delivering' (migration 7); testing the status as well would let the planner read
-- the deliveries through a partial index of unfinished rows, the whole backlog per batch
-- (it did, through deliveries_due_idx, dropped since: migration 33).
--
-- Failure streaks (migration 10): a subscription's streak starts at its first failed attempt
-- and ends with a success. Only subscriptions whose streak changes are written, so a healthy
-- queue writes none. A subscription whose streak began at least $15 seconds ago with at
-- least 3 failed attempts, and which is still active, is returned (in `disable`) to be
-- disabled as `failing`; $15 = 0 turns that off.
--
-- A delivery that gave up (now `failed`) queues a `webhookd.delivery.failed` operational
-- event (type $16) in this same statement, so the event is never lost and never delays the outcome;
-- deliveries of `webhookd.*` events never do (a failing operator endpoint would feed itself).
--
-- $17: this batch was tried before and that try's commit may have happened (its answer was
-- lost: a dropped connection, the statement deadline). The deliveries' updates are then
-- no-ops (their leases are gone), and attempts already logged are not logged again, nor
-- counted twice in a streak: each is known by its delivery, number and time. False on a
-- first try, which skips that look-up.
--
-- $18: the batch's key, the same for each of its tries. Each try holds an advisory lock on
-- it until its transaction ends, taken before it writes anything (a one-time filter of
-- whichever write runs first), and a later try first waits for that lock
-- (wait_for_earlier_try.sql): a first try still running on the server after its
-- client gave up on it (a lock wait, a slow flush) has committed or rolled back before the
-- look-up above, which would otherwise miss its attempts and log them twice. Not covered: a
-- first try whose query reaches the server only after that wait (held up in a network
-- stall); that would take a unique index on attempts.
--
-- The joins with the batch also name its ids as an index condition (`d.id = ANY($1)`,
-- `s.id = ANY($6)`, and `earlier.delivery_id = ANY($1)` in the look-up of earlier tries,
-- which PostgreSQL may run as one hashed read of attempts), redundant with the join: this statement runs on a plan made once per
-- session (sql/cluster/writer_session.sql), and a plan made while the tables were small
-- (a new database, statistics not yet updated) put deliveries on the outer side of the
-- join and read it whole at every batch. With the condition, any join order reads only
-- the batch's rows.
WITH guard AS (
    SELECT pg_advisory_xact_lock($18)
), updated AS (
    UPDATE deliveries AS d
    SET status = o.status,
        next_attempt_at = o.next_attempt_at,
        last_error = o.last_error,
        lease_id = NULL,
        completed_at = CASE WHEN o.status IN ('succeeded', 'failed') THEN now() END
    FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::text[])
        AS o(id, lease_id, status, next_attempt_at, last_error)
    WHERE d.id = ANY($1::uuid[]) AND d.id = o.id AND d.lease_id = o.lease_id AND EXISTS (SELECT FROM guard)
    RETURNING d.id, o.lease_id, d.status, d.event_type
), gave_up AS (
    INSERT INTO operational_events (event_type, data)
    SELECT $16::text,
           jsonb_build_object('delivery_id', a.delivery_id, 'subscription_id', a.subscription_id,
                              'event_type', u.event_type, 'attempts', a.attempt_number,
                              'last_error', a.error, 'last_status_code', a.status_code)
    FROM updated AS u
    JOIN unnest($1::uuid[], $2::uuid[], $6::uuid[], $7::int[], $9::int[], $10::text[])
        AS a(delivery_id, lease_id, subscription_id, attempt_number, status_code, error)
        ON a.delivery_id = u.id AND a.lease_id = u.lease_id
    WHERE u.status = 'failed' AND (u.event_type IS NULL OR u.event_type NOT LIKE 'webhookd.%')
), logged AS (
    INSERT INTO attempts (delivery_id, subscription_id, attempt_number, outcome, status_code,
                          error, duration_ms, response_excerpt, target_url, created_at)
    SELECT * FROM unnest($1::uuid[], $6::uuid[], $7::int[], $8::text[], $9::int[], $10::text[],
                         $11::int[], $12::text[], $13::text[], $14::timestamptz[])
        AS a(delivery_id, subscription_id, attempt_number, outcome, status_code, error,
             duration_ms, response_excerpt, target_url, created_at)
    WHERE EXISTS (SELECT FROM guard) AND (NOT $17::bool OR NOT EXISTS (
        SELECT FROM attempts AS earlier
        WHERE earlier.delivery_id = ANY($1::uuid[]) AND earlier.delivery_id = a.delivery_id
          AND earlier.attempt_number = a.attempt_number
          AND earlier.created_at = a.created_at
    ))
    RETURNING subscription_id, outcome, created_at
), batch_streaks AS (
    SELECT subscription_id,
           bool_or(outcome = 'success') AS succeeded,
           min(created_at) FILTER (WHERE outcome <> 'success') AS first_failure,
           count(*) FILTER (WHERE outcome <> 'success') AS failures
    FROM logged
    GROUP BY subscription_id
), streaks AS (
    UPDATE subscriptions AS s
    SET failing_since = CASE WHEN b.succeeded THEN NULL ELSE COALESCE(s.failing_since, b.first_failure) END,
        failed_in_streak = CASE WHEN b.succeeded THEN 0 ELSE s.failed_in_streak + b.failures::int END
    FROM batch_streaks AS b
    WHERE s.id = ANY($6::uuid[]) AND s.id = b.subscription_id AND (NOT b.succeeded OR s.failing_since IS NOT NULL)
    RETURNING s.id, s.is_active, s.failing_since, s.failed_in_streak
)
SELECT id, NULL::uuid AS disable FROM updated
UNION ALL
SELECT NULL, id FROM streaks
WHERE $15::float8 > 0 AND is_active AND failed_in_streak >= 3
  AND failing_since <= now() - make_interval(secs => $15)
