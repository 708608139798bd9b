-- Run once on the connection the claim loop keeps for its claims (and nothing else): no
-- sorts (and no JIT) for that session, so that sql/deliveries/claim_due_deliveries.sql reads deliveries
-- only through deliveries_subscription_due_idx. Every read of the claim orders by its keys
-- with a LIMIT; any other path to the same rows (deliveries_subscription_idx and a filter
-- on status, a bitmap scan) must sort the subscription's rows, and the planner chooses one
-- whenever the statistics make a subscription look small: with statistics of an empty queue
-- it read a paused subscription's 5,000 parked rows that way at every claim
-- (tests/api/claim_isolation.rs). A sort the claim does need (the batch in due order)
-- still happens: disabling only makes the planner avoid sorts where it has a choice.
-- Incremental sorts are off too: `enable_sort` does not cover them, and with statistics that
-- made deliveries_due_idx (dropped since: migration 33) look small the planner read it in
-- due order and sorted each subscription's few rows incrementally, stepping over every row due before them, at
-- every head and share of every claim: claims of 600 ms for as long as a backlog of
-- hanging subscriptions due first lasted (the benchmark's hanging-first fairness round).
-- JIT is off for the same transaction: the penalty that disabling adds to those sorts'
-- estimated cost puts the claim far above jit_above_cost, and compiling it took about
-- 600 ms per claim (measured; the claim itself takes a few).
-- The claim is planned once per session (a generic plan, `plan_cache_mode`): planning this
-- statement took about 2 ms, more than most claims take to run, and PostgreSQL re-planned
-- it at every claim with its parameters (a custom plan). The generic plan is the same
-- shape: with sorts ruled out, the index is the only way to each subscription's rows.
-- A plan made once must hold whatever the tables hold later: sequential scans are off too.
-- The generic plan made while delivery_bodies was small joined it by reading it whole (a
-- hash join over a sequential scan), and kept doing so at every claim until the next
-- ANALYZE, which on a stock autovacuum came a minute later: 36 ms claims that read 110,000
-- bodies. Every read of the claim has an index to use.
-- Session-wide rather than per claim transaction: each claim is then one statement and one
-- round trip instead of four (BEGIN, these settings, the claim, COMMIT).
SELECT set_config('enable_sort', 'off', false) AS sort,
       set_config('enable_incremental_sort', 'off', false) AS incremental_sort,
       set_config('enable_seqscan', 'off', false) AS seqscan,
       set_config('jit', 'off', false) AS jit,
       set_config('plan_cache_mode', 'force_generic_plan', false) AS plan_cache
