-- Maintenance gives up on any lock it cannot get within 500 ms rather than queue in front
-- of ingest or delivery (the next pass tries again).
SET lock_timeout = '500ms'
