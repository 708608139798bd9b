-- Stores a fan-out event's payload once.
INSERT INTO events (id, event_type, payload) VALUES ($1, $2, $3)
RETURNING created_at
