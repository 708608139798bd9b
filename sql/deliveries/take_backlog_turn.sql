-- Waits for, then holds until the transaction ends, subscription $1's backlog lock: every
-- change of whether a subscription is active or deleted, and every batch that parks,
-- resumes or cancels its waiting deliveries, takes turns on it (src/delivery/backlog.rs),
-- so a batch always moves rows the way the subscription's latest state says. An advisory
-- lock rather than the subscription's row: the outcome writer updates that row (failure
-- streaks) and must never wait for a batch. Two subscriptions whose ids hash alike only
-- take turns needlessly.
SELECT pg_advisory_xact_lock(72364182, hashtext($1::uuid::text))
