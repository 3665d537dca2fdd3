-- PostgreSQL only: `dualca_audit_append`, the audit append in one statement (see
-- migrations/postgres). On SQLite the one in-process writer appends with a read of the head and
-- an INSERT, which cost no round trips. This migration keeps the two sides' names in step.
SELECT 1;
