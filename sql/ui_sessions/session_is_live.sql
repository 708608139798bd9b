-- Whether the session with token hash $1 exists and has not expired (primary-key read).
SELECT EXISTS (SELECT 1 FROM ui_sessions WHERE token_hash = $1 AND expires_at > now()) AS "live!"
