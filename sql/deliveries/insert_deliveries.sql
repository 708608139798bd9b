-- Records many ingested webhooks in one statement (group commit): element i of each array
-- describes delivery i. Status is 'queued' (due now), 'filtered' (finished at once), or
-- 'delivering': handed to the ingesting instance's senders (src/delivery/handoff.rs), so
-- written claimed as a claim would leave it, under lease $6 until now() + $7 seconds, its
-- first attempt counted. Should that instance die, the lease expires and any instance
-- claims the row. Bodies go to delivery_bodies, written once (see migration 6).
--
-- $8: commit without waiting for the WAL flush (src/api/group_commit.rs): the handed-over
-- rows' sends start at once, and the batch's 202s wait for sql/deliveries/wait_until_durable.sql.
--
-- $9: the batch's key. The statement holds an advisory lock on it until its transaction
-- ends, taken before it writes anything: should its answer be lost (a dropped connection,
-- the statement deadline), the writer waits for that lock on another connection
-- (wait_for_earlier_try.sql) and then looks for the rows, which tells whether the batch
-- committed even while it was still running on the server when its client gave up.
WITH guard AS (
    SELECT pg_advisory_xact_lock($9)
), relaxed AS (
    SELECT set_config('synchronous_commit', 'off', true) WHERE $8::bool
), received AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bytea[], $5::text[])
        AS d(id, subscription_id, event_type, body, status)
    WHERE EXISTS (SELECT FROM guard)
), bodies AS (
    INSERT INTO delivery_bodies (delivery_id, body)
    SELECT id, body FROM received
)
INSERT INTO deliveries (id, subscription_id, event_type, status, next_attempt_at, completed_at,
                        lease_id, attempt_count)
SELECT d.id, d.subscription_id, d.event_type, d.status,
       CASE d.status WHEN 'queued' THEN now()
                     WHEN 'delivering' THEN now() + make_interval(secs => $7::float8) END,
       CASE WHEN d.status = 'filtered' THEN now() END,
       CASE WHEN d.status = 'delivering' THEN $6::uuid END,
       CASE WHEN d.status = 'delivering' THEN 1 ELSE 0 END
FROM received AS d
-- Joined only to be evaluated: it yields no row when $8 is false, hence the outer join.
LEFT JOIN relaxed ON true
