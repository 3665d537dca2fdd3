-- RFC 8823 email-reply-00. Each email-reply-00 challenge has one challenge mail: the first half
-- of its token (the mail's subject), the outbox row that carries it (whose id is the
-- Message-ID's local part), and the reply received for it, if any.
CREATE TABLE email_challenges (
    challenge_id TEXT PRIMARY KEY NOT NULL REFERENCES challenges (id),
    token_part1 TEXT NOT NULL,
    recipient TEXT NOT NULL,
    outbox_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- Set when a reply that matched the subject arrived; reply_error is NULL when it was
    -- correct and authenticated, else the problem (as on challenges.error).
    reply_at BIGINT,
    reply_error TEXT
);
CREATE UNIQUE INDEX email_challenges_token_part1 ON email_challenges (token_part1);

-- A challenge mail goes out from the address replies are read at, and says it is an ACME
-- message (Auto-Submitted: auto-generated; type=acme); other mail keeps the defaults (NULL).
ALTER TABLE outbox ADD COLUMN sender TEXT;
ALTER TABLE outbox ADD COLUMN auto_submitted TEXT;
