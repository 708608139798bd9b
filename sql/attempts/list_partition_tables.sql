-- Every table named like a daily attempts partition, whether it is attached, being
-- detached (an interrupted DETACH ... CONCURRENTLY), or already detached but not dropped.
SELECT c.relname::text AS "name!",
       i.inhrelid IS NOT NULL AS "attached!",
       coalesce(i.inhdetachpending, false) AS "detach_pending!"
FROM pg_class AS c
LEFT JOIN pg_inherits AS i ON i.inhrelid = c.oid AND i.inhparent = 'attempts'::regclass
WHERE c.relkind = 'r' AND c.relname ~ '^attempts_[0-9]{8}$'
ORDER BY c.relname
