-- Unfinished deliveries by status, and how long the oldest due one that is not being
-- attempted has been waiting (0 when none), for the metrics endpoint and the dashboard.
-- Parked deliveries (due 'infinity') count as queued but are never "due". Read in two
-- parts so that each is one partial index's rows: deliveries_subscription_due_idx holds
-- every unfinished row due before 'infinity' (an unfinished row always has a due time),
-- deliveries_parked_idx the parked ones. Run at most every few seconds per process
-- (src/metrics.rs).
WITH unfinished AS (
    SELECT status, next_attempt_at FROM deliveries
    WHERE status IN ('queued', 'retrying', 'delivering') AND next_attempt_at < 'infinity'
    UNION ALL
    SELECT status, next_attempt_at FROM deliveries
    WHERE status IN ('queued', 'retrying') AND next_attempt_at = 'infinity'
)
SELECT count(*) FILTER (WHERE status = 'queued') AS "queued!",
       count(*) FILTER (WHERE status = 'retrying') AS "retrying!",
       count(*) FILTER (WHERE status = 'delivering') AS "delivering!",
       COALESCE(EXTRACT(EPOCH FROM now() - min(next_attempt_at)
                        FILTER (WHERE status <> 'delivering' AND next_attempt_at <= now())), 0)::float8
           AS "oldest_due_age_seconds!"
FROM unfinished
