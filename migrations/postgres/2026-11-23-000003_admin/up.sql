-- Admin bearer tokens that were revoked before they expired (deny-list by jti).
CREATE TABLE revoked_tokens (
    jti TEXT PRIMARY KEY NOT NULL,
    subject TEXT NOT NULL,
    revoked_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX audit_events_subject ON audit_events (track, subject, seq);
CREATE INDEX audit_events_at ON audit_events (track, at, seq);
CREATE INDEX certificates_not_after ON certificates (track, not_after);
