-- Fewer index pages written per issuance. Every index an insert touches costs a page in the
-- write-ahead log, and the log's writes and fsyncs are a large share of an issuance's CPU
-- (BENCHMARKS.md).
--
-- certificates_track_status (track, status, not_after) is a prefix of certificates_revoked
-- (track, status, not_after, serial), which serves every query it served.
DROP INDEX certificates_track_status;

-- A machine certificate or account has no person, and a human one no asset. These indexes
-- only serve lookups by a given person or asset, so they need not hold the NULL rows, which
-- were every machine insert's extra pages in the person indexes (and every human insert's in
-- the asset indexes). A query that compares the column with a value implies IS NOT NULL, so
-- both databases still use them.
DROP INDEX certificates_person;
CREATE INDEX certificates_person ON certificates (person_id, status) WHERE person_id IS NOT NULL;
DROP INDEX accounts_person;
CREATE INDEX accounts_person ON accounts (person_id) WHERE person_id IS NOT NULL;
DROP INDEX certificates_asset;
CREATE INDEX certificates_asset ON certificates (asset_id, status) WHERE asset_id IS NOT NULL;
DROP INDEX accounts_asset;
CREATE INDEX accounts_asset ON accounts (asset_id) WHERE asset_id IS NOT NULL;
