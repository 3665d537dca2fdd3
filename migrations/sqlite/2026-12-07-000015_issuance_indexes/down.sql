CREATE INDEX certificates_not_after ON certificates (track, not_after);
CREATE INDEX certificates_spki ON certificates (spki_sha256);
