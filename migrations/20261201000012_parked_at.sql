-- When a waiting delivery was parked (its subscription paused or disabled). Maintenance
-- fails deliveries parked for a whole retention period; judged by their creation time
-- instead, an old delivery re-queued by a recovery or a retry and then parked would be
-- failed at the next pass, unattempted. NULL on rows parked before this column existed:
-- for them the creation time still counts.
ALTER TABLE deliveries ADD COLUMN parked_at timestamptz;
