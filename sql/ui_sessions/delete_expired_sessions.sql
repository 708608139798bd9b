-- Removes expired dashboard sessions; run at each login, so the table holds at most the
-- sessions of the last 12 hours (uses ui_sessions_expires_idx).
DELETE FROM ui_sessions WHERE expires_at <= now()
