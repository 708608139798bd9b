-- Ids of live, active subscriptions whose filters name an operational event explicitly
-- ($1: its type and prefix patterns, e.g. webhookd.delivery.failed, webhookd.*). Unlike
-- match_subscriptions_for_event.sql, subscriptions without filters are left out: they take
-- every event a producer sends, but webhookd's own events describe other subscriptions
-- (their ids, their receivers' errors) and go only to those who asked for them.
SELECT id
FROM subscriptions
WHERE is_active AND deleted_at IS NULL AND event_types && $1::text[]
ORDER BY id
