-- The newest CRL of each track. crl_number only increases: a new CRL replaces the row only if
-- the number it read is still the stored one.
CREATE TABLE crl_state (
    track TEXT PRIMARY KEY NOT NULL,
    crl_number BIGINT NOT NULL,
    this_update BIGINT NOT NULL,
    next_update BIGINT NOT NULL,
    der BLOB NOT NULL
);
INSERT INTO crl_state (track, crl_number, this_update, next_update, der) VALUES ('machine', 0, 0, 0, X'');
INSERT INTO crl_state (track, crl_number, this_update, next_update, der) VALUES ('human', 0, 0, 0, X'');
CREATE INDEX certificates_revoked ON certificates (track, status, not_after, serial);
