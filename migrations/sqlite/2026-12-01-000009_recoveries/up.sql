-- Help-desk recovery of a person who lost a key or a device: who asked, who approved (the
-- second operator a high-assurance recovery needs), how the identity was checked, and the
-- enrollment link it mailed. An enrollment now says which proofing level completing it grants.
ALTER TABLE enrollments ADD COLUMN grants_level TEXT NOT NULL DEFAULT 'email';

CREATE TABLE recoveries (
    id TEXT PRIMARY KEY NOT NULL,
    person_id TEXT NOT NULL REFERENCES people (id),
    requested_by TEXT NOT NULL,
    approved_by TEXT,
    cancelled_by TEXT,
    -- The RFC 5280 name the person's certificates are revoked with: keyCompromise or superseded.
    reason TEXT NOT NULL,
    method TEXT NOT NULL,
    evidence TEXT NOT NULL,
    high_assurance BOOLEAN NOT NULL,
    status TEXT NOT NULL,
    -- The one-time link the recovery mailed, once it was carried out.
    enrollment_token_hash TEXT REFERENCES enrollments (token_hash),
    created_at BIGINT NOT NULL,
    completed_at BIGINT,
    cancelled_at BIGINT
);
CREATE INDEX recoveries_person ON recoveries (person_id, created_at);
CREATE INDEX recoveries_enrollment ON recoveries (enrollment_token_hash);
-- At most one recovery of a person waits for approval, whichever process wrote it.
CREATE UNIQUE INDEX recoveries_one_pending ON recoveries (person_id) WHERE status = 'pending';
