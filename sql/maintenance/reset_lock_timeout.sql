-- Gives the pooled connection back with the default lock timeout.
RESET lock_timeout
