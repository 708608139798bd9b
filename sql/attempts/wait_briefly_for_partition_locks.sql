-- Creating a partition takes an ACCESS EXCLUSIVE lock on `attempts`, and while it waits for
-- that lock (behind a long query on attempts, say) every attempt write and read queues
-- behind it: the outcome writer stops, for everyone. The server keeps waiting even after
-- the client has given up. So a creation waits at most 500 ms, for this transaction only;
-- partitions are made days ahead, and the next maintenance pass tries again.
SET LOCAL lock_timeout = '500ms'
