-- Subscriptions with waiting deliveries not where the subscription's state puts them:
-- due while it is paused, disabled or deleted, or parked while it is active or deleted.
-- Left so by an instance stopped in the middle of moving them (src/delivery/backlog.rs).
-- Run every minute on every instance, so it must not read the backlogs themselves:
-- - due rows: one descent of deliveries_subscription_due_idx per inactive subscription,
--   stopped at the first row. The LIMIT in a lateral subquery keeps the planner from
--   hashing every due row instead, as it did an EXISTS (a hanging receiver's whole due
--   backlog read each minute); the ORDER BY, which only that index serves without a sort,
--   keeps it from a table scan hoping to meet a row early (with a large backlog of
--   another subscription, such a scan read all 5,000,000 rows for a paused subscription
--   with nothing due);
-- - parked rows: the subscriptions that have any, one descent of deliveries_parked_idx
--   each (a skip scan: the ordered look-up for the next subscription id is something only
--   that index serves; probed by subscription, the planner took deliveries_parked_since_idx
--   and read every parked row for each active subscription).
WITH RECURSIVE parked (subscription_id) AS (
    (SELECT subscription_id FROM deliveries
     WHERE status IN ('queued', 'retrying') AND next_attempt_at = 'infinity'
     ORDER BY subscription_id
     LIMIT 1)
    UNION ALL
    SELECT (SELECT d.subscription_id FROM deliveries AS d
            WHERE d.status IN ('queued', 'retrying') AND d.next_attempt_at = 'infinity'
              AND d.subscription_id > parked.subscription_id
            ORDER BY d.subscription_id
            LIMIT 1)
    FROM parked
    WHERE parked.subscription_id IS NOT NULL
)
SELECT s.id
FROM subscriptions AS s
CROSS JOIN LATERAL (
    SELECT 1 FROM deliveries AS d
    WHERE d.subscription_id = s.id AND d.status IN ('queued', 'retrying') AND d.next_attempt_at < 'infinity'
    ORDER BY d.next_attempt_at
    LIMIT 1
) AS due
WHERE NOT s.is_active
UNION
SELECT s.id
FROM parked
JOIN subscriptions AS s ON s.id = parked.subscription_id
WHERE s.is_active OR s.deleted_at IS NOT NULL
