-- Which of the deliveries $1 exist: how an ingest batch whose write got no answer is looked
-- for (src/api/group_commit.rs, once its try has ended: wait_for_earlier_try.sql) on a
-- database that does not let webhookd wait for a flush (wait_until_durable.sql).
SELECT ARRAY(SELECT d.id FROM deliveries AS d WHERE d.id = ANY($1::uuid[])) AS "found!"
