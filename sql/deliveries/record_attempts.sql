-- Records many finished attempts in one statement: each attempt's log row is appended
-- (even when its lease was lost: the request really was sent), and each delivery takes its
-- new state only if lease $2 is still held. $3 is the new status, $4 the next due time
-- (NULL once finished), $5 the last error; $6.. are the attempt log columns.
-- Returns the ids of the deliveries that were updated. Holding the lease implies being
-- 'delivering' (migration 7); testing the status as well would let the planner read the
-- deliveries through deliveries_due_idx, the whole backlog per batch.
WITH updated AS (
    UPDATE deliveries AS d
    SET status = o.status,
        next_attempt_at = o.next_attempt_at,
        last_error = o.last_error,
        lease_id = NULL,
        completed_at = CASE WHEN o.status IN ('succeeded', 'failed') THEN now() END
    FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::text[])
        AS o(id, lease_id, status, next_attempt_at, last_error)
    WHERE d.id = o.id AND d.lease_id = o.lease_id
    RETURNING d.id
), logged AS (
    INSERT INTO attempts (delivery_id, subscription_id, attempt_number, outcome, status_code,
                          error, duration_ms, response_excerpt, target_url, created_at)
    SELECT * FROM unnest($1::uuid[], $6::uuid[], $7::int[], $8::text[], $9::int[], $10::text[],
                         $11::int[], $12::text[], $13::text[], $14::timestamptz[])
)
SELECT id FROM updated
