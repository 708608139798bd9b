-- Unfinished deliveries by status, and how long the oldest due one that is not being
-- attempted has been waiting (0 when none), for the metrics endpoint. Parked deliveries
-- (due 'infinity') count as queued but are never "due". One pass over the rows of
-- deliveries_due_idx; run at most every few seconds per process (src/metrics.rs).
SELECT count(*) FILTER (WHERE status = 'queued') AS "queued!",
       count(*) FILTER (WHERE status = 'retrying') AS "retrying!",
       count(*) FILTER (WHERE status = 'delivering') AS "delivering!",
       COALESCE(EXTRACT(EPOCH FROM now() - min(next_attempt_at)
                        FILTER (WHERE status <> 'delivering' AND next_attempt_at <= now())), 0)::float8
           AS "oldest_due_age_seconds!"
FROM deliveries
WHERE status IN ('queued', 'retrying', 'delivering')
