-- Reserves a key. A concurrent transaction holding the same key makes this wait for it to
-- finish; then nothing is inserted and the caller replays the stored response.
INSERT INTO idempotency_keys (scope, key, request_hash, response)
VALUES ($1, $2, $3, '')
ON CONFLICT DO NOTHING
RETURNING key
