-- Mail waiting to be sent. Rows are written in the same transaction as the event that causes
-- them and drained by the delivery worker; sent rows stay, so a dedupe key holds for good.
CREATE TABLE outbox (
    id TEXT PRIMARY KEY NOT NULL,
    track TEXT NOT NULL,
    recipient TEXT NOT NULL,
    subject TEXT NOT NULL,
    body_text TEXT NOT NULL,
    body_html TEXT NOT NULL,
    -- e.g. `expiry-reminder:<serial>:7d`: a notification with a key is enqueued at most once.
    dedupe_key TEXT,
    created_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    sent_at BIGINT,
    last_error TEXT
);
CREATE UNIQUE INDEX outbox_dedupe_key ON outbox (dedupe_key);
-- Only unsent rows are ever looked up by due time.
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE sent_at IS NULL;
