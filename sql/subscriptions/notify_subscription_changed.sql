-- Tells every instance that a subscription changed, so they evict it from their caches.
-- Sent inside the writing transaction: delivered only if, and when, it commits.
SELECT pg_notify('webhookd_subscriptions', $1)
