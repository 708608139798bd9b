-- The oldest of the $2 newest deliveries before the cursor id $1 (NULL: from the newest),
-- and how many there are: the floor of one search window of the dashboard's list when its
-- filters have no index to follow (list_deliveries.sql then reads that window and no
-- more). A walk of the primary key's last entries; the bound is written as a range so that
-- a generic plan keeps it an index condition. (PostgreSQL 15 has no min(uuid).)
WITH window_ids AS (
    SELECT id FROM deliveries
    WHERE id < COALESCE($1::uuid, 'ffffffff-ffff-ffff-ffff-ffffffffffff')
    ORDER BY id DESC
    LIMIT $2
)
SELECT (SELECT id FROM window_ids ORDER BY id LIMIT 1) AS floor,
       (SELECT count(*) FROM window_ids) AS "examined!"
