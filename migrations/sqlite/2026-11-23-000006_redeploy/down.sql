DROP INDEX scheduled_revocations_due;
DROP TABLE scheduled_revocations;
