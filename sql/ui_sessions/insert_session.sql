-- Starts a dashboard session: $1 is the SHA-256 of the cookie's token, valid for $2 seconds.
INSERT INTO ui_sessions (token_hash, expires_at)
VALUES ($1, now() + make_interval(secs => $2::float8))
