-- The shared key named $1, stored as $2 if there is none yet: the first instance's random
-- bytes win, and every instance reads the same key.
WITH created AS (
    INSERT INTO ui_keys (name, key) VALUES ($1, $2)
    ON CONFLICT (name) DO NOTHING
    RETURNING key
)
SELECT key AS "key!" FROM created
UNION ALL
SELECT key FROM ui_keys WHERE name = $1
LIMIT 1
