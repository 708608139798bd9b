-- no-transaction
-- A subscription's failed deliveries by creation time: what a recovery counts and walks.
-- Partial, so the rows of a busy, healthy subscription are never read to find them.
-- Built CONCURRENTLY (outside a transaction, hence alone in its file): `deliveries` holds
-- the whole retained history, and a plain CREATE INDEX would block ingest and delivery for
-- as long as the build takes on an upgrade. Should the build fail, it leaves an invalid
-- index and this migration unapplied: drop the index (DROP INDEX CONCURRENTLY
-- deliveries_failed_idx) and start again.
CREATE INDEX CONCURRENTLY deliveries_failed_idx ON deliveries (subscription_id, created_at, id) WHERE status = 'failed';
