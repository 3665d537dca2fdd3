-- Foundation schema. Timestamps are Unix seconds (BIGINT) on both backends so that one set of
-- queries serves SQLite and PostgreSQL. No foreign key cascades: certificate, revocation and
-- audit rows are never deleted as a side effect.
CREATE TABLE accounts (
    id TEXT PRIMARY KEY NOT NULL,
    track TEXT NOT NULL,
    key_thumbprint TEXT NOT NULL,
    jwk TEXT NOT NULL,
    status TEXT NOT NULL,
    contact TEXT NOT NULL,
    tos_agreed BOOLEAN NOT NULL,
    eab_kid TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX accounts_track_key ON accounts (track, key_thumbprint);

CREATE TABLE orders (
    id TEXT PRIMARY KEY NOT NULL,
    track TEXT NOT NULL,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    status TEXT NOT NULL,
    identifiers TEXT NOT NULL,
    profile TEXT NOT NULL,
    expires BIGINT NOT NULL,
    error TEXT,
    certificate_serial TEXT,
    replaces TEXT,
    created_at BIGINT NOT NULL,
    -- Microseconds since the epoch: orders the account's orders list by creation.
    created_micros BIGINT NOT NULL
);
CREATE INDEX orders_account ON orders (account_id, created_micros, id);

CREATE TABLE authorizations (
    id TEXT PRIMARY KEY NOT NULL,
    track TEXT NOT NULL,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    order_id TEXT NOT NULL REFERENCES orders (id),
    identifier_type TEXT NOT NULL,
    identifier_value TEXT NOT NULL,
    wildcard BOOLEAN NOT NULL,
    status TEXT NOT NULL,
    expires BIGINT NOT NULL,
    position BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX authorizations_order ON authorizations (order_id, position);
CREATE INDEX authorizations_account_value ON authorizations (account_id, identifier_value);

CREATE TABLE challenges (
    id TEXT PRIMARY KEY NOT NULL,
    authorization_id TEXT NOT NULL REFERENCES authorizations (id),
    kind TEXT NOT NULL,
    token TEXT NOT NULL,
    status TEXT NOT NULL,
    validated BIGINT,
    error TEXT,
    position BIGINT NOT NULL
);
CREATE INDEX challenges_authorization ON challenges (authorization_id, position);

CREATE TABLE certificates (
    serial TEXT PRIMARY KEY NOT NULL,
    track TEXT NOT NULL,
    account_id TEXT REFERENCES accounts (id),
    order_id TEXT REFERENCES orders (id),
    asset_id TEXT,
    person_id TEXT,
    profile TEXT NOT NULL,
    identifiers TEXT NOT NULL,
    spki_sha256 TEXT NOT NULL,
    not_before BIGINT NOT NULL,
    not_after BIGINT NOT NULL,
    der BLOB NOT NULL,
    status TEXT NOT NULL,
    revocation_reason BIGINT,
    revoked_at BIGINT,
    replaced_by TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX certificates_track_status ON certificates (track, status, not_after);
CREATE INDEX certificates_account ON certificates (account_id);
CREATE INDEX certificates_spki ON certificates (spki_sha256);

CREATE TABLE audit_events (
    track TEXT NOT NULL,
    seq BIGINT NOT NULL,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (track, seq)
);

CREATE TABLE nonces (
    value TEXT PRIMARY KEY NOT NULL,
    expires BIGINT NOT NULL
);
CREATE INDEX nonces_expires ON nonces (expires);
