-- Stores a fan-out event's payload once.
--
-- $4, for an event published without an Idempotency-Key (src/api/events.rs): a lock of
-- the transaction's own, taken before it writes anything and held until it ends. Should
-- the answer to its COMMIT be lost, a wait for this lock on another connection
-- (sql/deliveries/wait_for_earlier_try.sql) returns only once the transaction has
-- committed or rolled back on the server, and a look for the event then tells which.
-- Taken here rather than by a statement of its own: one round trip fewer per event.
WITH guard AS (
    SELECT pg_advisory_xact_lock($4) WHERE $4::bigint IS NOT NULL
)
INSERT INTO events (id, event_type, payload)
SELECT $1, $2, $3
WHERE $4::bigint IS NULL OR EXISTS (SELECT FROM guard)
RETURNING created_at
