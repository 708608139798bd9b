-- The stored request hash and response of a key.
SELECT request_hash, response FROM idempotency_keys WHERE scope = $1 AND key = $2
