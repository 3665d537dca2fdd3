DROP INDEX outbox_due;
DROP INDEX outbox_dedupe_key;
DROP TABLE outbox;
