use diesel::prelude::*;

use super::rows::CertificateRow;
use super::schema::certificates::dsl as k;
use super::DbConnection;
use crate::model::{CertificateRecord, CertificateStatus};
use crate::{Result, Track};

pub fn insert(conn: &mut DbConnection, row: &CertificateRow) -> Result<()> {
    diesel::insert_into(k::certificates).values(row).execute(conn)?;
    Ok(())
}

pub fn by_serial(conn: &mut DbConnection, track: Track, serial: &str) -> Result<Option<CertificateRecord>> {
    k::certificates
        .filter(k::serial.eq(serial))
        .filter(k::track.eq(track.as_str()))
        .select(CertificateRow::as_select())
        .first(conn)
        .optional()?
        .map(CertificateRecord::try_from)
        .transpose()
}

/// Marks a valid certificate revoked. False when it was already revoked.
pub fn revoke(conn: &mut DbConnection, serial: &str, reason: u8, at: i64) -> Result<bool> {
    let n = diesel::update(
        k::certificates.filter(k::serial.eq(serial)).filter(k::status.eq(CertificateStatus::Valid.as_str())),
    )
    .set((
        k::status.eq(CertificateStatus::Revoked.as_str()),
        k::revocation_reason.eq(Some(i64::from(reason))),
        k::revoked_at.eq(Some(at)),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// Revoked certificates of a track that have not expired: what a CRL lists.
pub fn revoked_unexpired(conn: &mut DbConnection, track: Track, now: i64) -> Result<Vec<(String, i64, i64)>> {
    let rows: Vec<(String, Option<i64>, Option<i64>)> = k::certificates
        .filter(k::track.eq(track.as_str()))
        .filter(k::status.eq(CertificateStatus::Revoked.as_str()))
        .filter(k::not_after.gt(now))
        .select((k::serial, k::revoked_at, k::revocation_reason))
        .load(conn)?;
    Ok(rows.into_iter().map(|(serial, at, reason)| (serial, at.unwrap_or(0), reason.unwrap_or(0))).collect())
}

/// A certificate's status, revocation time and reason code, as stored.
pub type StoredStatus = (String, Option<i64>, Option<i64>);

/// Status of one certificate for OCSP.
pub fn status(
    conn: &mut DbConnection,
    track: Track,
    serial: &str,
) -> Result<Option<StoredStatus>> {
    Ok(k::certificates
        .filter(k::serial.eq(serial))
        .filter(k::track.eq(track.as_str()))
        .select((k::status, k::revoked_at, k::revocation_reason))
        .first(conn)
        .optional()?)
}
