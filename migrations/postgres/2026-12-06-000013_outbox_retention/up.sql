-- Sent and given-up mail is purged after `[mail] keep_sent` (the housekeeping job). A dedupe
-- key must outlive the occasion it names, or the mail would be sent again: each row with a key
-- says until when that matters (for a certificate's reminders, its expiry), and is kept until
-- then. Rows written before this column have a key but no date, and are kept for good.
ALTER TABLE outbox ADD COLUMN dedupe_until BIGINT;
