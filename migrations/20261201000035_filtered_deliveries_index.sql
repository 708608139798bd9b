-- no-transaction
-- A subscription's filtered deliveries by creation time: what
-- `GET /subscriptions/{id}/deliveries?status=filtered` reads (with deliveries_failed_idx
-- for `failed`), so that a rare status is found without walking the subscription's history.
-- Partial: only filtered rows (written so at ingest, never changed) are in it. Built
-- CONCURRENTLY, alone in its file (see migration 13). IF NOT EXISTS: a build that an
-- interrupted start finished anyway is kept, and an invalid one is dropped first
-- (src/db/mod.rs, `migrate`).
CREATE INDEX CONCURRENTLY IF NOT EXISTS deliveries_filtered_idx ON deliveries (subscription_id, created_at) WHERE status = 'filtered';
