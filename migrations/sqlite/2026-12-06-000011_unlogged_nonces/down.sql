-- Kept in step with the PostgreSQL migration of the same name, which makes the nonces table
-- unlogged. SQLite has no unlogged tables, and with SQLite the nonces live in the process's
-- memory, not in this table: nothing to do.
SELECT 1;
