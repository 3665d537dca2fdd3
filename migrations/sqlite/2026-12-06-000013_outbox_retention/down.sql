ALTER TABLE outbox DROP COLUMN dedupe_until;
