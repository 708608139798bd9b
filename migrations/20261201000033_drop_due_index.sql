-- no-transaction
-- deliveries_due_idx (unfinished rows by due time) was the claim's index until the claim
-- began reading each subscription through deliveries_subscription_due_idx (migration 20).
-- Since then only the queue-depth metric read it, yet every delivery still paid for it three
-- times (an entry for the row as queued, as claimed and, for a retry, as retrying): without
-- it, PostgreSQL CPU per webhook fell by about a tenth and a row's insert from 18-20 to
-- 16-17 µs (docs/benchmark.md). Unfinished rows are now found through
-- deliveries_subscription_due_idx and, parked ones, deliveries_parked_idx (migration 32).
-- Dropped CONCURRENTLY, alone in its file, so that ingest and delivery go on meanwhile.
DROP INDEX CONCURRENTLY IF EXISTS deliveries_due_idx;
