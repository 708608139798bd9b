-- Ids of live, active subscriptions that want an event: those with no filter, and those
-- whose filters overlap $1 (the event type and its prefix patterns, e.g. order.created,
-- order.*). Served by subscriptions_all_events_idx and subscriptions_event_types_idx.
SELECT id
FROM subscriptions
WHERE is_active AND deleted_at IS NULL
  AND (event_types = '{}' OR event_types && $1::text[])
ORDER BY id
