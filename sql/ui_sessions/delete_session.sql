-- Ends one dashboard session ("Log out").
DELETE FROM ui_sessions WHERE token_hash = $1
