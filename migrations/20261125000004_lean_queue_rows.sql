-- Keep the queue's rows small: every delivery row is rewritten twice (claimed, then its
-- outcome recorded), and neither update can be HOT (status and next_attempt_at are in the
-- claim index). An inline 1 KiB body would be copied into the heap and the WAL each time.
-- Stored out of line (TOAST), the body is written once at ingest and the updates copy only
-- a pointer to it. EXTERNAL: no compression, since bodies are mostly small JSON and
-- compressing costs CPU on the hot path. toast_tuple_target 128 (the minimum) moves any
-- body that is not tiny out of line.
ALTER TABLE deliveries ALTER COLUMN body SET STORAGE EXTERNAL;
ALTER TABLE deliveries SET (toast_tuple_target = 128);

-- A queue table turns over its whole content: every delivery leaves two dead row versions
-- and dead entries at the head of the claim index, which the claim and "next due" scans
-- must step over until VACUUM removes them. The default (vacuum once a fifth of the table
-- is dead) lets that grow with the history kept; vacuum after 2 % instead, so the head of
-- the queue stays clean whatever the table's size. (Vacuum skips the all-visible pages of
-- finished history, so frequent runs stay cheap.)
ALTER TABLE deliveries SET (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_vacuum_threshold = 5000,
    autovacuum_analyze_scale_factor = 0.02
);
