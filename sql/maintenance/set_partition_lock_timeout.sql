-- Detaching and dropping an old partition may wait longer: DETACH ... CONCURRENTLY takes only
-- a SHARE UPDATE EXCLUSIVE lock, which ingest and delivery never wait behind, and the
-- dropped table is detached already. What it usually waits for is autovacuum working on that
-- partition, which PostgreSQL cancels once a lock request has waited deadlock_timeout (1 s
-- by default); a shorter timeout would give up first, every pass.
SET lock_timeout = '5s'
