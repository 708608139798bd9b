-- Lets go of the migration lock taken by try_migration_lock.sql.
SELECT pg_advisory_unlock(8603390863846894436) AS "unlocked!"
