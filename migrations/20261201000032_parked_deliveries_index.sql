-- no-transaction
-- Parked deliveries (due 'infinity': their subscription is paused or disabled) by
-- subscription: what resuming a subscription, expiring parked rows and the queue-depth
-- metric read. deliveries_subscription_due_idx leaves them out (so a paused subscription
-- costs a claim nothing), and deliveries_due_idx, which held them, goes in the next
-- migration. Built CONCURRENTLY, alone in its file (see migration 13); should the build
-- fail, drop the invalid index (DROP INDEX CONCURRENTLY deliveries_parked_idx) and start again.
CREATE INDEX CONCURRENTLY deliveries_parked_idx ON deliveries (subscription_id)
    WHERE status IN ('queued', 'retrying') AND next_attempt_at = 'infinity';
