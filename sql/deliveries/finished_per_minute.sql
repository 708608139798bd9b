-- Deliveries finished in each minute of the last hour, succeeded vs failed, for the
-- dashboard's chart. Reads the last hour of deliveries_finished_idx (completed_at) and those
-- rows: its cost grows with the hour's traffic, so the dashboard caches the answer for a few
-- seconds (src/ui/overview.rs). Minutes without deliveries are absent.
SELECT date_trunc('minute', completed_at) AS "minute!",
       count(*) FILTER (WHERE status = 'succeeded') AS "succeeded!",
       count(*) FILTER (WHERE status = 'failed') AS "failed!"
FROM deliveries
WHERE status IN ('succeeded', 'failed', 'filtered')
  AND completed_at >= date_trunc('minute', now()) - interval '59 minutes'
GROUP BY 1
ORDER BY 1
