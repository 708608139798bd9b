-- One event, without its payload.
SELECT id, event_type, created_at FROM events WHERE id = $1
