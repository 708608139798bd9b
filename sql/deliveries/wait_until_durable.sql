-- Returns once everything this session committed before is flushed to disk (and, where the
-- database has synchronous standbys, confirmed by them): a transaction that writes WAL and
-- commits with the database's own synchronous_commit flushes the WAL up to its commit,
-- and so everything before it. A logical decoding message is the smallest such write that
-- needs no table and no privilege beyond PUBLIC's (a transaction that only takes an xid
-- writes nothing, so its commit is not flushed). Consumers of logical decoding see the
-- message under the prefix 'webhookd' and may ignore it.
SELECT pg_logical_emit_message(true, 'webhookd', '')::text AS flushed_past
