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
