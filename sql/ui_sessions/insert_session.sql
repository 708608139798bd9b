-- Starts a dashboard session: $1 is the SHA-256 of the cookie's token, valid for $2 seconds,
-- opened with the admin token whose fingerprint is $3.
INSERT INTO ui_sessions (token_hash, expires_at, admin_fingerprint)
VALUES ($1, now() + make_interval(secs => $2::float8), $3)
