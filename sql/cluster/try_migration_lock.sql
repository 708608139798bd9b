-- Takes the migration lock for this session if no other session holds it (see
-- src/db/mod.rs, `migrate`). The key is "webhookd" in ASCII.
SELECT pg_try_advisory_lock(8603390863846894436) AS "locked!"
