-- Records the outcome of many attempts at once, each only if its lease ($2) is still held.
-- $3 is the new status, $4 the next due time (NULL once finished), $5 the last error.
-- Returns the ids that were updated; the others lost their lease to a later claim.
UPDATE deliveries AS d
SET status = o.status,
    next_attempt_at = o.next_attempt_at,
    last_error = o.last_error,
    lease_id = NULL,
    completed_at = CASE WHEN o.status IN ('succeeded', 'failed') THEN now() END
FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::text[])
    AS o(id, lease_id, status, next_attempt_at, last_error)
WHERE d.id = o.id AND d.lease_id = o.lease_id AND d.status = 'delivering'
RETURNING d.id
