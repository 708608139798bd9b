-- Takes the maintenance lock for this session if no other session holds it.
SELECT pg_try_advisory_lock(7236418113) AS "locked!"
