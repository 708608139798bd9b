-- Every stored secret, deleted subscriptions included, as stored (plaintext or sealed): read
-- at start-up to check the encryption key and to encrypt what is not yet (src/secrets.rs).
SELECT id, secret_key AS "secret_key: _", previous_secret_key AS "previous_secret_key: _",
       deleted_at IS NOT NULL AS "deleted!"
FROM subscriptions
WHERE secret_key IS NOT NULL OR previous_secret_key IS NOT NULL
