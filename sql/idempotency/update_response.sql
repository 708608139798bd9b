-- Stores the response to replay for a reserved key.
UPDATE idempotency_keys SET response = $3 WHERE scope = $1 AND key = $2
