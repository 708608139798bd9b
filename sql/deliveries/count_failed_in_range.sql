-- How many of subscription $1's failed deliveries were created in [$2, $3), counting at most
-- $4 (the caller asks for one more than its limit, so that a huge range costs no more than
-- the limit). Served by deliveries_failed_idx.
SELECT count(*) AS "count!"
FROM (
    SELECT 1 FROM deliveries
    WHERE subscription_id = $1 AND status = 'failed' AND created_at >= $2 AND created_at < $3
    LIMIT $4
) AS failed
