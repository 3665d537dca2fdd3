DROP INDEX certificates_asset;
DROP INDEX accounts_asset;
ALTER TABLE accounts DROP COLUMN person_id;
ALTER TABLE accounts DROP COLUMN asset_id;
DROP TABLE eab_keys;
DROP TABLE asset_identifiers;
DROP TABLE assets;
