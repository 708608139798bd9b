-- The partitions of attempts, by name.
SELECT c.relname::text AS "name!"
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'attempts'::regclass
ORDER BY c.relname
