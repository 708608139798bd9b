-- The newest deliveries in the waiting status $3 (queued, retrying or delivering) before the
-- cursor id $1, optionally of subscription $2 and of event type $4: the dashboard's delivery
-- list filtered on a waiting status. Read through the two partial indexes that hold every
-- waiting row (due ones, then parked ones), so a page costs what the queue holds, not the
-- history: list_deliveries.sql walks the history back until it has a page, all of it when
-- nothing waits (the overview's "Retrying: see them" with nothing retrying read every
-- delivery of the retention period). The union leaves every column nullable as sqlx infers
-- it: the outer list says which are not.
SELECT id AS "id!", subscription_id AS "subscription_id!", event_type, event_id AS "event_id: _",
       status AS "status!: _", attempt_count AS "attempt_count!", next_attempt_at, last_error,
       created_at AS "created_at!", completed_at
FROM (
    SELECT id, subscription_id, event_type, event_id, status, attempt_count, next_attempt_at, last_error, created_at, completed_at
    FROM deliveries
    WHERE status IN ('queued', 'retrying', 'delivering') AND next_attempt_at < 'infinity'
      AND status = $3
      AND ($1::uuid IS NULL OR id < $1)
      AND ($2::uuid IS NULL OR subscription_id = $2)
      AND ($4::text IS NULL OR event_type = $4)
    UNION ALL
    SELECT id, subscription_id, event_type, event_id, status, attempt_count, NULL, last_error, created_at, completed_at
    FROM deliveries
    WHERE status IN ('queued', 'retrying') AND next_attempt_at = 'infinity'
      AND status = $3
      AND ($1::uuid IS NULL OR id < $1)
      AND ($2::uuid IS NULL OR subscription_id = $2)
      AND ($4::text IS NULL OR event_type = $4)
) AS waiting
ORDER BY id DESC
LIMIT $5
