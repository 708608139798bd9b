-- Whether a database of that name exists in the cluster.
SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS "exists!"
