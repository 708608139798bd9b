-- Whether event $1 exists, once it is on disk (and, where the database has synchronous
-- standbys, confirmed by them): src/api/events.rs looks for an event whose COMMIT got no
-- answer once that transaction has ended, and a COMMIT cancelled while it waited for a
-- synchronous standby is visible then but could still be lost in a failover. This
-- statement's own commit waits for the flush (and the standbys) past every commit before
-- it, as sql/deliveries/wait_until_durable.sql explains.
SELECT pg_logical_emit_message(true, 'webhookd', '')::text AS flushed_past,
       EXISTS (SELECT FROM events WHERE id = $1) AS "durable!"
