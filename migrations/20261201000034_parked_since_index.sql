-- no-transaction
-- Parked deliveries by when they were parked: what maintenance's expiry of parked rows
-- reads (sql/maintenance/expire_parked_deliveries.sql), only those parked before the
-- retention's cutoff. Through deliveries_parked_idx it fetched every parked row at each
-- pass to test the time (a disabled receiver's millions, every 5 minutes). Built
-- CONCURRENTLY, alone in its file (see migration 13); should the build fail, drop the
-- invalid index (DROP INDEX CONCURRENTLY deliveries_parked_since_idx) and start again.
CREATE INDEX CONCURRENTLY deliveries_parked_since_idx ON deliveries ((COALESCE(parked_at, created_at)))
    WHERE status IN ('queued', 'retrying') AND next_attempt_at = 'infinity';
