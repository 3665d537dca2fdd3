DROP INDEX accounts_asset;
CREATE INDEX accounts_asset ON accounts (asset_id);
DROP INDEX certificates_asset;
CREATE INDEX certificates_asset ON certificates (asset_id, status);
DROP INDEX accounts_person;
CREATE INDEX accounts_person ON accounts (person_id);
DROP INDEX certificates_person;
CREATE INDEX certificates_person ON certificates (person_id, status);
CREATE INDEX certificates_track_status ON certificates (track, status, not_after);
