-- Two facts the queue's statements rely on, enforced from now on.
--
-- Only a claimed row has a lease, and only an unfinished row has a due time. With these,
-- "is this row still ours?" is `lease_id = <our lease>` and "is this row still claimable?"
-- is `next_attempt_at <= now()`, and neither test mentions `status`. That matters for the
-- planner: a statement whose WHERE names the statuses of deliveries_due_idx may be answered
-- from that partial index, and the planner sizes the index by the last ANALYZE, usually
-- taken while the queue was empty. It then prefers scanning the "one-row" index over
-- looking ids up by primary key, and every claim and every batch of outcomes reads the
-- whole backlog: a drain that slows as the backlog grows (measured: 74 ms per claim of 64
-- rows over a 100,000-row backlog, instead of about 1 ms).
--
-- NOT VALID: rows already stored are not scanned now (the code never wrote a row that
-- breaks them); every row inserted or updated from now on is checked.
ALTER TABLE deliveries
    ADD CONSTRAINT deliveries_lease_only_while_delivering
        CHECK (lease_id IS NULL OR status = 'delivering') NOT VALID,
    ADD CONSTRAINT deliveries_due_only_while_unfinished
        CHECK (next_attempt_at IS NULL OR status IN ('queued', 'retrying', 'delivering')) NOT VALID;
