-- Releases the maintenance lock.
SELECT pg_advisory_unlock(7236418113)
