-- Whether the session with token hash $1 exists, has not expired, and was opened with the
-- current admin token (fingerprint $2) (primary-key read).
SELECT EXISTS (
    SELECT 1 FROM ui_sessions WHERE token_hash = $1 AND expires_at > now() AND admin_fingerprint = $2
) AS "live!"
