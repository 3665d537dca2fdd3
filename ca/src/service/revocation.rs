//! revokeCert (RFC 8555 §7.6) and the CA's own revocations.

use serde_json::json;
use x509_parser::prelude::FromDer;

use super::Ca;
use crate::audit;
use crate::jwk::PublicJwk;
use crate::model::{Account, CertificateRecord, CertificateStatus, IdentifierKind, RevocationReason};
use crate::storage::{certificates, orders};
use crate::{ids, Error, Result, Track};

/// Who asks for a revocation over ACME.
pub enum Revoker<'a> {
    /// An account of the track: the one that ordered the certificate, or one that holds valid
    /// authorizations for every identifier in it.
    Account(&'a Account),
    /// Whoever holds the certificate's private key, proven by signing with it.
    CertificateKey { thumbprint: &'a str },
}

impl Ca {
    /// Any certificate of a track by serial, for operators and tests.
    pub fn certificate(&self, track: Track, serial: &str) -> Result<CertificateRecord> {
        self.storage
            .read(|conn| certificates::by_serial(conn, track, serial))?
            .ok_or_else(|| Error::not_found(format!("no certificate with serial {serial} on the {track} track")))
    }

    pub fn revoke_by_subscriber(
        &self,
        track: Track,
        revoker: Revoker<'_>,
        cert_der: &[u8],
        reason: Option<i64>,
    ) -> Result<()> {
        let code = reason.unwrap_or(0);
        let reason = RevocationReason::from_code(code).filter(|r| r.subscriber_may_use()).ok_or_else(|| {
            Error::bad_revocation_reason(format!("revocation reason {code} is not accepted; use 0, 1, 3, 4 or 5"))
        })?;
        let (_, parsed) = x509_parser::certificate::X509Certificate::from_der(cert_der)
            .map_err(|_| Error::malformed("certificate is not a DER X.509 certificate"))?;
        let serial = ids::hex(parsed.tbs_certificate.raw_serial());
        let now = self.clock.unix();
        let (actor, revoker_account) = match &revoker {
            Revoker::Account(a) => (format!("account:{}", a.id), Some(*a)),
            Revoker::CertificateKey { thumbprint } => (format!("key:{thumbprint}"), None),
        };
        let result = self.storage.write(|conn| {
            let cert = certificates::by_serial(conn, track, &serial)?
                .filter(|c| c.der == cert_der)
                .ok_or_else(|| Error::not_found("this CA did not issue that certificate on this track"))?;
            let allowed = match &revoker {
                Revoker::CertificateKey { thumbprint } => {
                    PublicJwk::from_spki_der(parsed.public_key().raw)?.thumbprint == *thumbprint
                }
                Revoker::Account(account) => {
                    cert.account_id.as_deref() == Some(account.id.as_str())
                        || holds_all_authorizations(conn, account, &cert, now)?
                }
            };
            if !allowed {
                return Err(Error::unauthorized(
                    "the requester neither ordered this certificate, holds authorizations for all its identifiers, nor its key",
                ));
            }
            if cert.status == CertificateStatus::Revoked || !certificates::revoke(conn, &serial, reason as u8, now)? {
                return Err(Error::already_revoked(format!("certificate {serial} is already revoked")));
            }
            audit::record(conn, track,
                    now,
                    actor.clone(),
                    "certificate.revoked",
                    format!("certificate:{serial}"),
                    json!({ "reason": reason.name(), "by_account": revoker_account.map(|a| a.id.clone()) }))?;
            tell_the_person(conn, &cert, reason, now)?;
            Ok(())
        });
        if result.is_ok() {
            self.revocation_committed(track, &serial);
        }
        result
    }

    /// An operator revokes any certificate of either track by serial, with any RFC 5280 reason
    /// but certificateHold and removeFromCRL (revocation here is final).
    pub fn revoke_by_operator(
        &self,
        track: Option<Track>,
        serial: &str,
        reason: RevocationReason,
        operator: &str,
    ) -> Result<Track> {
        if matches!(reason, RevocationReason::CertificateHold | RevocationReason::RemoveFromCrl) {
            return Err(Error::bad_revocation_reason(
                "revocation is final: certificateHold and removeFromCRL are not used",
            ));
        }
        let serial = serial.trim().to_ascii_lowercase().replace(':', "");
        let now = self.clock.unix();
        let track = self.storage.write(|conn| {
            let mut found = None;
            for track in Track::ALL.into_iter().filter(|t| track.is_none_or(|only| only == *t)) {
                if let Some(cert) = certificates::by_serial(conn, track, &serial)? {
                    found = Some((track, cert));
                    break;
                }
            }
            let (track, cert) =
                found.ok_or_else(|| Error::not_found(format!("no certificate with serial {serial}")))?;
            if !certificates::revoke(conn, &serial, reason as u8, now)? {
                return Err(Error::already_revoked(format!("certificate {serial} is already revoked")));
            }
            audit::record(
                conn,
                track,
                now,
                format!("operator:{operator}"),
                "certificate.revoked",
                format!("certificate:{serial}"),
                json!({ "reason": reason.name() }),
            )?;
            tell_the_person(conn, &cert, reason, now)?;
            Ok(track)
        })?;
        self.revocation_committed(track, &serial);
        Ok(track)
    }
}

/// A person hears of every revocation of a certificate issued to them, in the transaction that
/// revokes it (the leaver's and the recovery's bulk revocations send their own mail instead).
fn tell_the_person(
    conn: &mut crate::storage::DbConnection,
    cert: &CertificateRecord,
    reason: RevocationReason,
    now: i64,
) -> Result<()> {
    let Some(person_id) = &cert.person_id else { return Ok(()) };
    let Some(person) = crate::storage::people::by_id(conn, person_id)? else { return Ok(()) };
    let names: Vec<String> = cert.identifiers.iter().map(|i| i.value.clone()).collect();
    let mail = super::OutboundMail::notification(
        Track::Human,
        person.email,
        "dualca: your certificate was revoked",
        &[
            &format!(
                "Your {} certificate for {} (serial {}) was revoked ({}).",
                cert.profile,
                names.join(", "),
                cert.serial,
                reason.name()
            ),
            "Mail signed with it no longer verifies as current, and it no longer signs you in. \
             Run `dualca enroll` for a new one, or ask the help desk if you did not expect this.",
        ],
    )
    .with_dedupe_key(format!("revoked:{}", cert.serial), cert.not_after.max(now));
    super::outbox::enqueue(conn, &mail, now)?;
    Ok(())
}

fn holds_all_authorizations(
    conn: &mut crate::storage::DbConnection,
    account: &Account,
    cert: &CertificateRecord,
    now: i64,
) -> Result<bool> {
    for id in &cert.identifiers {
        let value = id.authorization_value();
        let kind: IdentifierKind = id.kind;
        if !orders::holds_valid_authorization(conn, &account.id, kind, value, now)? {
            return Ok(false);
        }
    }
    Ok(!cert.identifiers.is_empty())
}
