-- Ids of up to $1 unfinished recoveries, oldest first (recoveries_running_idx): every
-- delivering instance works on them, a batch at a time, until they are done.
SELECT id FROM recoveries WHERE status = 'running' ORDER BY created_at LIMIT $1
