-- Subscriptions with waiting deliveries not where the subscription's state puts them:
-- due while it is paused, disabled or deleted, or parked while it is active or deleted.
-- Left so by an instance stopped in the middle of moving them (src/delivery/backlog.rs).
-- One index descent per subscription in either state.
SELECT s.id
FROM subscriptions AS s
WHERE NOT s.is_active
  AND EXISTS (SELECT 1 FROM deliveries AS d
              WHERE d.subscription_id = s.id AND d.status IN ('queued', 'retrying') AND d.next_attempt_at < 'infinity')
UNION
SELECT s.id
FROM subscriptions AS s
WHERE (s.is_active OR s.deleted_at IS NOT NULL)
  AND EXISTS (SELECT 1 FROM deliveries AS d
              WHERE d.subscription_id = s.id AND d.status IN ('queued', 'retrying') AND d.next_attempt_at = 'infinity')
