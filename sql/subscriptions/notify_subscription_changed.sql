-- Tells every instance that a subscription changed, so they evict it from their caches.
-- Sent inside the writing transaction: delivered only if, and when, it commits. The payload
-- is the id and the row's new version (updated_at, µs since the epoch): an instance then
-- refuses an older copy of the row from Redis, which a failed or late delete of the writer's
-- could have left there (src/subscription_cache.rs). Every write sets updated_at to
-- clock_timestamp() while it holds the row's lock, so one subscription's versions follow
-- the order its writes commit in (now(), its transaction's start, would not: a writer that
-- began first may commit second).
SELECT pg_notify('webhookd_subscriptions',
                 $1::text || ' ' || COALESCE((SELECT (extract(epoch FROM updated_at) * 1000000)::bigint
                                              FROM subscriptions WHERE id = $1::uuid), 0))
