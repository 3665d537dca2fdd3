use diesel::prelude::*;

use super::rows::CertificateRow;
use super::schema::certificates::dsl as k;
use super::DbConnection;
use crate::model::{CertificateRecord, CertificateStatus};
use crate::{Result, Track};

pub fn insert(conn: &mut DbConnection, row: &CertificateRow) -> Result<()> {
    on_backend!(conn, |db| diesel::insert_into(k::certificates).values(row).execute(db))?;
    Ok(())
}

pub fn by_serial(conn: &mut DbConnection, track: Track, serial: &str) -> Result<Option<CertificateRecord>> {
    on_backend!(conn, |db| k::certificates
        .filter(k::serial.eq(serial))
        .filter(k::track.eq(track.as_str()))
        .select(CertificateRow::as_select())
        .get_result(db)
        .optional())?
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
pub fn status(conn: &mut DbConnection, track: Track, serial: &str) -> Result<Option<StoredStatus>> {
    Ok(k::certificates
        .filter(k::serial.eq(serial))
        .filter(k::track.eq(track.as_str()))
        .select((k::status, k::revoked_at, k::revocation_reason))
        .get_result(conn)
        .optional()?)
}

/// What a certificate search may narrow by.
#[derive(Debug, Default, Clone)]
pub struct CertificateFilter {
    pub account: Option<String>,
    pub asset: Option<String>,
    pub person: Option<String>,
    /// A substring of an identifier value.
    pub identifier: Option<String>,
    pub status: Option<CertificateStatus>,
    /// Unexpired and ending before this time.
    pub expiring_before: Option<i64>,
}

/// A page of a track's certificates by serial, after `after_serial`.
pub fn search(
    conn: &mut DbConnection,
    track: Track,
    filter: &CertificateFilter,
    now: i64,
    after_serial: Option<&str>,
    limit: i64,
) -> Result<Vec<CertificateRecord>> {
    let mut query = k::certificates.filter(k::track.eq(track.as_str())).into_boxed();
    if let Some(after) = after_serial {
        query = query.filter(k::serial.gt(after.to_string()));
    }
    if let Some(account) = &filter.account {
        query = query.filter(k::account_id.eq(account.clone()));
    }
    if let Some(asset) = &filter.asset {
        query = query.filter(k::asset_id.eq(asset.clone()));
    }
    if let Some(person) = &filter.person {
        query = query.filter(k::person_id.eq(person.clone()));
    }
    if let Some(identifier) = &filter.identifier {
        query = query.filter(k::identifiers.like(format!("%{}%", identifier.replace(['%', '_'], ""))));
    }
    if let Some(status) = filter.status {
        query = query.filter(k::status.eq(status.as_str()));
    }
    if let Some(before) = filter.expiring_before {
        query = query.filter(k::not_after.gt(now)).filter(k::not_after.le(before));
    }
    query
        .order(k::serial.asc())
        .limit(limit)
        .select(CertificateRow::as_select())
        .load(conn)?
        .into_iter()
        .map(CertificateRecord::try_from)
        .collect()
}

/// Certificates of a track by status and expiry, for dashboards and metrics.
pub struct CertificateCounts {
    pub active: i64,
    pub revoked: i64,
    pub expiring_within_7_days: i64,
    pub revoked_since: i64,
}

pub fn counts(conn: &mut DbConnection, track: Track, now: i64, revoked_since: i64) -> Result<CertificateCounts> {
    // The CA's own service certificates (HTTPS, OCSP responder) are not subscribers'.
    let base = || {
        k::certificates
            .filter(k::track.eq(track.as_str()))
            .filter(k::profile.ne_all(["ca-server-tls", "ocsp-responder"]))
    };
    let valid = CertificateStatus::Valid.as_str();
    let revoked = CertificateStatus::Revoked.as_str();
    Ok(CertificateCounts {
        active: base().filter(k::status.eq(valid)).filter(k::not_after.gt(now)).count().get_result(conn)?,
        revoked: base().filter(k::status.eq(revoked)).count().get_result(conn)?,
        expiring_within_7_days: base()
            .filter(k::status.eq(valid))
            .filter(k::not_after.gt(now))
            .filter(k::not_after.le(now + 7 * 86400))
            .count()
            .get_result(conn)?,
        revoked_since: base()
            .filter(k::status.eq(revoked))
            .filter(k::revoked_at.ge(revoked_since))
            .count()
            .get_result(conn)?,
    })
}

/// Valid, unexpired certificates of an asset.
pub fn live_for_asset(conn: &mut DbConnection, asset_id: &str, now: i64) -> Result<Vec<String>> {
    Ok(k::certificates
        .filter(k::asset_id.eq(asset_id))
        .filter(k::status.eq(CertificateStatus::Valid.as_str()))
        .filter(k::not_after.gt(now))
        .select(k::serial)
        .load(conn)?)
}

/// Records that `serial` was replaced by `by` (ARI); false when it already was.
pub fn set_replaced_by(conn: &mut DbConnection, serial: &str, by: &str) -> Result<bool> {
    Ok(diesel::update(k::certificates.filter(k::serial.eq(serial)).filter(k::replaced_by.is_null()))
        .set(k::replaced_by.eq(Some(by)))
        .execute(conn)?
        == 1)
}

pub fn asset_of(conn: &mut DbConnection, serial: &str) -> Result<Option<String>> {
    Ok(k::certificates
        .filter(k::serial.eq(serial))
        .select(k::asset_id)
        .first::<Option<String>>(conn)
        .optional()?
        .flatten())
}

/// Valid, unexpired certificates of a track that were issued to assets.
/// Valid, unexpired certificates of assets on `track`, not replaced through ARI, whose
/// suggested renewal window (RFC 9773; centred two thirds into the lifetime, see
/// `ari::suggested_window`) has its centre before `now`: the candidates for the expiry safety
/// net, which checks the exact window. Filtered here, not in memory: a CA with many live
/// certificates must not load them all every few minutes.
pub fn renewal_candidates(conn: &mut DbConnection, track: Track, now: i64) -> Result<Vec<CertificateRecord>> {
    k::certificates
        .filter(k::track.eq(track.as_str()))
        .filter(k::status.eq(CertificateStatus::Valid.as_str()))
        .filter(k::not_after.gt(now))
        .filter(k::asset_id.is_not_null())
        .filter(k::replaced_by.is_null())
        .filter((k::not_before + (k::not_after - k::not_before) * 2_i64 / 3_i64).lt(now))
        .select(CertificateRow::as_select())
        .load(conn)?
        .into_iter()
        .map(CertificateRecord::try_from)
        .collect()
}

/// The identifiers of an asset's valid, unexpired certificates issued after `not_before`.
pub fn newer_live_for_asset(
    conn: &mut DbConnection,
    asset_id: &str,
    not_before: i64,
    now: i64,
) -> Result<Vec<Vec<crate::model::Identifier>>> {
    let texts: Vec<String> = k::certificates
        .filter(k::asset_id.eq(asset_id))
        .filter(k::status.eq(CertificateStatus::Valid.as_str()))
        .filter(k::not_after.gt(now))
        .filter(k::not_before.gt(not_before))
        .select(k::identifiers)
        .load(conn)?;
    texts.iter().map(|t| super::rows::identifiers_from_text(t)).collect()
}

/// Valid, unexpired certificates of a person.
pub fn live_for_person(conn: &mut DbConnection, person_id: &str, now: i64) -> Result<Vec<String>> {
    Ok(k::certificates
        .filter(k::person_id.eq(person_id))
        .filter(k::status.eq(CertificateStatus::Valid.as_str()))
        .filter(k::not_after.gt(now))
        .select(k::serial)
        .load(conn)?)
}

/// Whether a person holds a valid, unexpired certificate of this profile.
pub fn person_holds_live_profile(conn: &mut DbConnection, person_id: &str, profile: &str, now: i64) -> Result<bool> {
    Ok(diesel::select(diesel::dsl::exists(
        k::certificates
            .filter(k::person_id.eq(person_id))
            .filter(k::profile.eq(profile))
            .filter(k::status.eq(CertificateStatus::Valid.as_str()))
            .filter(k::not_after.gt(now)),
    ))
    .get_result(conn)?)
}

/// Valid, unexpired human-track certificates issued to people.
pub fn live_person_certificates(conn: &mut DbConnection, now: i64, until: i64) -> Result<Vec<CertificateRecord>> {
    k::certificates
        .filter(k::track.eq(Track::Human.as_str()))
        .filter(k::status.eq(CertificateStatus::Valid.as_str()))
        .filter(k::not_after.gt(now))
        .filter(k::not_after.le(until))
        .filter(k::person_id.is_not_null())
        .select(CertificateRow::as_select())
        .load(conn)?
        .into_iter()
        .map(CertificateRecord::try_from)
        .collect()
}
