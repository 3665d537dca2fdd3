-- Revocations that wait for a grace period: a redeploy supersedes an asset's certificates
-- only once the new deployment has had time to get its own.
CREATE TABLE scheduled_revocations (
    serial TEXT PRIMARY KEY NOT NULL,
    track TEXT NOT NULL,
    due_at BIGINT NOT NULL,
    reason BIGINT NOT NULL,
    requested_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    done_at BIGINT
);
CREATE INDEX scheduled_revocations_due ON scheduled_revocations (done_at, due_at);
