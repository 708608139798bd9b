-- Retention: indexes that let maintenance find expired rows without scanning tables.

-- Finished deliveries by completion time (batch deletes past the retention).
CREATE INDEX deliveries_finished_idx ON deliveries (completed_at)
    WHERE status IN ('succeeded', 'failed', 'filtered');
-- Fan-out events and idempotency records by age.
CREATE INDEX events_created_idx ON events (created_at);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
-- Soft-deleted subscriptions waiting to be purged.
CREATE INDEX subscriptions_deleted_idx ON subscriptions (deleted_at) WHERE deleted_at IS NOT NULL;
