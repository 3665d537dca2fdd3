-- The machine track's inventory: assets, the identifiers each may hold, and the EAB
-- credentials that bind ACME accounts to them.
CREATE TABLE assets (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    owner_team TEXT NOT NULL,
    owner_email TEXT NOT NULL,
    service TEXT NOT NULL,
    environment TEXT NOT NULL,
    spiffe_id TEXT,
    profile TEXT,
    status TEXT NOT NULL,
    compromised BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    decommissioned_at BIGINT
);
CREATE UNIQUE INDEX assets_name ON assets (name);

CREATE TABLE asset_identifiers (
    asset_id TEXT NOT NULL REFERENCES assets (id),
    identifier_type TEXT NOT NULL,
    identifier_value TEXT NOT NULL,
    PRIMARY KEY (asset_id, identifier_type, identifier_value)
);
CREATE INDEX asset_identifiers_value ON asset_identifiers (identifier_type, identifier_value);

CREATE TABLE eab_keys (
    kid TEXT PRIMARY KEY NOT NULL,
    track TEXT NOT NULL,
    asset_id TEXT REFERENCES assets (id),
    person_id TEXT,
    -- AES-256-GCM under the data directory's key-encryption key: nonce || ciphertext || tag.
    sealed_key BYTEA NOT NULL,
    single_use BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX eab_keys_asset ON eab_keys (asset_id);

ALTER TABLE accounts ADD COLUMN asset_id TEXT REFERENCES assets (id);
ALTER TABLE accounts ADD COLUMN person_id TEXT;
CREATE INDEX accounts_asset ON accounts (asset_id);
CREATE INDEX certificates_asset ON certificates (asset_id, status);
