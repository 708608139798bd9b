-- Parks a paused subscription's waiting deliveries ('infinity' keeps them out of claims).
UPDATE deliveries
SET next_attempt_at = 'infinity', parked_at = now()
WHERE subscription_id = $1 AND status IN ('queued', 'retrying') AND next_attempt_at < 'infinity'
