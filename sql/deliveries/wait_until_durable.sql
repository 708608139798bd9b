-- Returns, of the deliveries $1 (committed without waiting for their flush, by any
-- session), those that exist, once they are on disk (and, where the database has
-- synchronous standbys, confirmed by them); a missing one was lost before its flush (a
-- crash or failover since its commit) and must not be acknowledged.
--
-- Why this works: a transaction that writes WAL and commits with the database's own
-- synchronous_commit (on by default) flushes the WAL up to its commit record, and so
-- everything before it. The rows this statement sees were committed before it started,
-- so their commit records come first. A logical decoding message is the smallest such
-- write that needs no table and no privilege beyond PUBLIC's (a transaction that only
-- takes an xid writes nothing, so its commit is not flushed). Consumers of logical
-- decoding see the message under the prefix 'webhookd' and may ignore it.
SELECT pg_logical_emit_message(true, 'webhookd', '')::text AS flushed_past,
       ARRAY(SELECT d.id FROM deliveries AS d WHERE d.id = ANY($1::uuid[])) AS "durable!"
