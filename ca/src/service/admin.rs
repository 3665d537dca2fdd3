//! What the admin API and CLI read and do: audit queries and checkpoints, certificate search,
//! counts for dashboards, the admin token deny-list, and audited denials.

use serde_json::{json, Value};

use super::Ca;
use crate::audit::{self, AuditEvent};
use crate::model::CertificateRecord;
use crate::storage::audit as audit_store;
pub use crate::storage::audit::AuditFilter;
pub use crate::storage::certificates::CertificateFilter;
use crate::storage::certificates::{self, CertificateCounts};
use crate::storage::rows::AuditRow;
use crate::storage::tokens;
use crate::{Error, Result, Track};

/// One event of a track's audit chain, as stored.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub track: Track,
    pub seq: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub details: Value,
    pub prev_hash: String,
    pub hash: String,
}

impl TryFrom<AuditRow> for AuditRecord {
    type Error = Error;
    fn try_from(r: AuditRow) -> Result<AuditRecord> {
        Ok(AuditRecord {
            track: crate::storage::rows::parse_track(&r.track)?,
            details: serde_json::from_str(&r.details).unwrap_or(Value::String(r.details.clone())),
            seq: r.seq,
            at: r.at,
            actor: r.actor,
            action: r.action,
            subject: r.subject,
            prev_hash: r.prev_hash,
            hash: r.hash,
        })
    }
}

impl Ca {
    pub fn audit_events(
        &self,
        track: Track,
        filter: &AuditFilter,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<AuditRecord>> {
        let rows = self.storage.read(|conn| audit_store::search(conn, track, filter, after_seq, limit))?;
        rows.into_iter().map(AuditRecord::try_from).collect()
    }

    /// The newest event of a track's chain: what a checkpoint signs.
    pub fn audit_head(&self, track: Track) -> Result<Option<AuditRecord>> {
        self.storage.read(|conn| audit_store::head(conn, track))?.map(AuditRecord::try_from).transpose()
    }

    pub fn search_certificates(
        &self,
        track: Track,
        filter: &CertificateFilter,
        after_serial: Option<&str>,
        limit: i64,
    ) -> Result<Vec<CertificateRecord>> {
        let now = self.clock.unix();
        self.storage.read(|conn| certificates::search(conn, track, filter, now, after_serial, limit))
    }

    /// A certificate with every audit event about it, oldest first.
    pub fn certificate_history(&self, track: Track, serial: &str) -> Result<(CertificateRecord, Vec<AuditRecord>)> {
        let cert = self.certificate(track, serial)?;
        let filter = AuditFilter { serial: Some(cert.serial.clone()), ..AuditFilter::default() };
        let events = self.audit_events(track, &filter, 0, 1000)?;
        Ok((cert, events))
    }

    /// Counts for a track's dashboard; "revoked today" counts from midnight UTC.
    pub fn certificate_counts(&self, track: Track) -> Result<CertificateCounts> {
        let now = self.clock.unix();
        let midnight = now - now.rem_euclid(86400);
        self.storage.read(|conn| certificates::counts(conn, track, now, midnight))
    }

    /// Puts an admin token on the deny-list; audited on both chains, since an admin token may
    /// act on either track.
    pub fn revoke_admin_token(&self, jti: &str, subject: &str, expires_at: i64, operator: &str) -> Result<bool> {
        let now = self.clock.unix();
        self.storage.write(|conn| {
            let added = tokens::revoke(conn, jti, subject, now, expires_at)?;
            if added {
                for track in Track::ALL {
                    audit::record(
                        conn,
                        track,
                        now,
                        format!("operator:{operator}"),
                        "admin.token-revoked",
                        format!("token:{jti}"),
                        json!({ "token_subject": subject }),
                    )?;
                }
            }
            Ok(added)
        })
    }

    pub fn is_admin_token_revoked(&self, jti: &str) -> Result<bool> {
        self.storage.read(|conn| tokens::is_revoked(conn, jti))
    }

    /// Records a refused admin request on the track it concerned.
    pub fn record_admin_denial(&self, track: Track, subject: &str, role: &str, action: &str) -> Result<()> {
        let now = self.clock.unix();
        self.storage.write(|conn| {
            audit::append(
                conn,
                &AuditEvent::new(
                    track,
                    now,
                    format!("admin:{subject}"),
                    "admin.denied",
                    format!("admin:{subject}"),
                    json!({ "role": role, "attempted": action }),
                ),
            )
            .map(|_| ())
        })
    }
}
