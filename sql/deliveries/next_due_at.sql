-- When the earliest unfinished delivery becomes due (NULL when there is none).
SELECT min(next_attempt_at) AS next_due_at
FROM deliveries
WHERE status IN ('queued', 'retrying', 'delivering') AND next_attempt_at < 'infinity'
