-- Nonces are issued and redeemed on every ACME request, each in a transaction of its own, and
-- on a logged table each of those commits waited for a flush of PostgreSQL's write-ahead log:
-- two per request. An unlogged table writes no WAL. What it gives up is safe here: a crash
-- (or a failover to a replica, where unlogged tables are empty) loses the outstanding nonces,
-- so a client's next request gets badNonce with a fresh nonce and is retried (RFC 8555 §6.5);
-- a nonce can never become valid again, since only an INSERT of a new random value makes one.
ALTER TABLE nonces SET UNLOGGED;
