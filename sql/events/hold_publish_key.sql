-- Taken first in the transaction of an event published without an Idempotency-Key, and
-- held until that transaction ends (src/api/events.rs): should the answer to its COMMIT be
-- lost, a wait for this lock on another connection (sql/deliveries/wait_for_earlier_try.sql)
-- returns only once the transaction has committed or rolled back on the server, and a look
-- for the event then tells which.
SELECT pg_advisory_xact_lock($1)
