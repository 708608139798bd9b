-- Queues one operational event ($1 its `webhookd.*` type, $2 its `data` object) in the
-- caller's transaction; the relay fans it out after commit.
INSERT INTO operational_events (event_type, data) VALUES ($1, $2)
