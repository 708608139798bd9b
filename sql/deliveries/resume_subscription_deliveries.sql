-- Makes a reactivated subscription's parked deliveries due now.
UPDATE deliveries
SET next_attempt_at = now()
WHERE subscription_id = $1 AND status IN ('queued', 'retrying') AND next_attempt_at = 'infinity'
