ALTER TABLE outbox DROP COLUMN auto_submitted;
ALTER TABLE outbox DROP COLUMN sender;
DROP INDEX email_challenges_token_part1;
DROP TABLE email_challenges;
