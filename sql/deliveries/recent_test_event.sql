-- Whether subscription $1 was sent a test event (`webhookd.test`) in the last $2 seconds:
-- test events are rate-limited, since a portal link holder can ask for them. Served by
-- deliveries_subscription_idx (subscription_id, created_at DESC).
SELECT EXISTS (
    SELECT 1 FROM deliveries
    WHERE subscription_id = $1 AND created_at > now() - make_interval(secs => $2::float8)
      AND event_type = 'webhookd.test'
) AS "recent!"
