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
        if filter.status.is_none() {
            // Names every status, which filters nothing, so that the range on not_after can
            // use certificates_revoked (track, status, not_after, serial): there is no index
            // on not_after alone, which every certificate issued would have to write.
            query = query.filter(k::status.eq_any(CertificateStatus::ALL.iter().map(|s| s.as_str())));
        }
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use diesel::connection::InstrumentationEvent;

    use super::*;
    use crate::storage::testing::storages;

    const NOW: i64 = 1_765_000_000;
    const DAY: i64 = 86_400;

    fn row(serial: &str, track: Track, status: CertificateStatus, not_after: i64) -> CertificateRow {
        CertificateRow {
            serial: serial.into(),
            track: track.as_str().into(),
            account_id: None,
            order_id: None,
            asset_id: None,
            person_id: None,
            profile: "tls-server".into(),
            identifiers: "[]".into(),
            spki_sha256: "00".into(),
            not_before: not_after - 10 * DAY,
            not_after,
            der: vec![0x30, 0x00],
            status: status.as_str().into(),
            revocation_reason: None,
            revoked_at: None,
            replaced_by: None,
            created_at: NOW - DAY,
        }
    }

    fn serials(found: &[CertificateRecord]) -> Vec<&str> {
        found.iter().map(|c| c.serial.as_str()).collect()
    }

    /// The search by expiry has no index on not_after alone (the migration `issuance_indexes`
    /// dropped it): without a status it names every status, which filters nothing and lets
    /// certificates_revoked bound the scan.
    #[test]
    fn the_search_by_expiry_finds_every_status_through_the_status_index() {
        use CertificateStatus::{Revoked, Valid};
        for storage in storages() {
            let rows = [
                row("01-valid-soon", Track::Machine, Valid, NOW + DAY),
                row("02-revoked-soon", Track::Machine, Revoked, NOW + 2 * DAY),
                row("03-valid-later", Track::Machine, Valid, NOW + 30 * DAY),
                row("04-expired", Track::Machine, Valid, NOW - DAY),
                row("05-other-track", Track::Human, Valid, NOW + DAY),
            ];
            storage.write(|conn| rows.iter().try_for_each(|r| insert(conn, r))).unwrap();
            let week = CertificateFilter { expiring_before: Some(NOW + 7 * DAY), ..Default::default() };
            let found = storage.read(|conn| search(conn, Track::Machine, &week, NOW, None, 50)).unwrap();
            assert_eq!(serials(&found), ["01-valid-soon", "02-revoked-soon"]);
            let revoked = CertificateFilter { status: Some(Revoked), ..week.clone() };
            let found = storage.read(|conn| search(conn, Track::Machine, &revoked, NOW, None, 50)).unwrap();
            assert_eq!(serials(&found), ["02-revoked-soon"]);
            let after =
                storage.read(|conn| search(conn, Track::Machine, &week, NOW, Some("01-valid-soon"), 50)).unwrap();
            assert_eq!(serials(&after), ["02-revoked-soon"]);

            if storage.postgres_url.is_some() {
                continue;
            }
            // SQLite's plan for the statement the search sends, captured as it runs.
            let sent = Arc::new(Mutex::new(Vec::<String>::new()));
            let plan = storage
                .read(|conn| {
                    let log = sent.clone();
                    conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
                        if let InstrumentationEvent::StartQuery { query, .. } = event {
                            log.lock().unwrap().push(query.to_string());
                        }
                    });
                    search(conn, Track::Machine, &week, NOW, None, 50)?;
                    conn.set_instrumentation(|_: InstrumentationEvent<'_>| {});
                    let query = sent.lock().unwrap().iter().find(|q| q.starts_with("SELECT")).cloned().unwrap();
                    // The text ends with its binds; unbound parameters are NULL, which the
                    // plan does not depend on.
                    let sql = query.split(" -- binds:").next().unwrap().to_string();
                    let DbConnection::Sqlite(sqlite) = conn else { unreachable!("the first test storage is SQLite") };
                    #[derive(QueryableByName)]
                    struct Step {
                        #[diesel(sql_type = diesel::sql_types::Text)]
                        detail: String,
                    }
                    let steps: Vec<Step> = diesel::sql_query(format!("EXPLAIN QUERY PLAN {sql}")).load(sqlite)?;
                    Ok(steps.into_iter().map(|s| s.detail).collect::<Vec<_>>().join("\n"))
                })
                .unwrap();
            assert!(
                plan.contains("INDEX certificates_revoked (track=? AND status=? AND not_after>? AND not_after<?)"),
                "the search by expiry does not range over certificates_revoked:\n{plan}"
            );
        }
    }
}
