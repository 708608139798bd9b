-- Which of the deliveries $1 exist (src/api/group_commit.rs: an ingest batch whose write
-- got no answer, looked for once its try has ended: sql/deliveries/wait_for_earlier_try.sql).
SELECT ARRAY(SELECT d.id FROM deliveries AS d WHERE d.id = ANY($1::uuid[])) AS "found!"
