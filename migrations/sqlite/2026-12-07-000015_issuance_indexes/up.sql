-- Two fewer index pages written per issuance (BENCHMARKS.md, twelfth run: about 3 % of the
-- server's CPU per issuance on SQLite).
--
-- No query looks certificates up by their key's fingerprint: the column is kept, the index
-- (a random page of its own for every certificate issued) is not.
DROP INDEX certificates_spki;

-- Every query that bounds not_after also names either the track and the status, which
-- certificates_revoked (track, status, not_after, serial) serves, or an asset or a person,
-- which their own indexes serve; the admin search by expiry names every status when it is
-- given none, so that it is of the first kind.
DROP INDEX certificates_not_after;
