//! The CA's operations, as the front ends call them. Each write runs in one transaction with its
//! audit event. The front ends pass domain values in and get domain values back; they never see
//! a connection.

mod accounts;
mod admin;
mod assets;
mod email_reply;
mod nonces;
mod orders;
mod outbox;
mod people;
mod recovery;
mod revocation;
mod revocation_status;
mod server_tls;

use std::path::PathBuf;

pub use accounts::NewAccount;
pub use admin::{AuditFilter, AuditRecord, CertificateFilter};
pub use assets::{AssetQuery, Decommissioned, EabProof, SyncPlan, SyncReport};
pub use email_reply::{
    expected_response, subject_token, EmailReply, EmailReplySettings, ReplyAuthentication, AUTO_SUBMITTED_ACME,
};
pub use nonces::NonceExchange;
pub use orders::{NewOrder, ValidationTarget};
pub use outbox::{
    mail_retry_delay, render_mail, Housekeeping, MailBody, MailRetry, OutboundMail, QueuedMail, Retention,
    MAX_MAIL_ATTEMPTS,
};
pub use revocation::Revoker;
pub use revocation_status::CrlInfo;
pub use server_tls::ServerCertificate;

use crate::clock::Clock;
use crate::hierarchy::Hierarchy;
use crate::issuance::CertificateUrls;
use crate::policy::TrackPolicy;
use crate::storage::Storage;
use crate::{audit, Result, Track};

pub struct Settings {
    pub data_dir: PathBuf,
    pub database_url: String,
    pub database_max_connections: u32,
    /// Base of every URL the CA puts in certificates and ACME objects, e.g.
    /// `https://localhost:14000`.
    pub public_url: String,
    pub organization: String,
    pub machine: TrackPolicy,
    pub human: TrackPolicy,
    /// How long an issued nonce stays redeemable.
    pub nonce_lifetime_seconds: i64,
    pub revocation: RevocationSettings,
    pub email_reply: EmailReplySettings,
}

#[derive(Debug, Clone)]
pub struct RevocationSettings {
    /// nextUpdate − thisUpdate of each CRL.
    pub crl_lifetime_seconds: i64,
    /// nextUpdate − thisUpdate of each OCSP response.
    pub ocsp_lifetime_seconds: i64,
    /// Sign OCSP responses with a delegated responder certificate instead of the issuing CA.
    pub ocsp_delegated: bool,
    /// Leave the CRL and OCSP pointers out of machine certificates that live 7 days or less,
    /// as the CA/B Baseline Requirements allow for short-lived certificates.
    pub omit_urls_for_short_lived: bool,
}

impl Default for RevocationSettings {
    fn default() -> Self {
        RevocationSettings {
            crl_lifetime_seconds: 24 * 3600,
            ocsp_lifetime_seconds: 12 * 3600,
            ocsp_delegated: false,
            omit_urls_for_short_lived: false,
        }
    }
}

/// How many parsed account keys are kept: a few hundred bytes each, so a few MiB at most.
const ACCOUNT_KEYS_KEPT: usize = 10_000;

pub struct Ca {
    pub storage: Storage,
    pub hierarchy: Hierarchy,
    pub clock: Clock,
    machine: TrackPolicy,
    human: TrackPolicy,
    public_url: String,
    nonces: nonces::NonceStore,
    revocation: RevocationSettings,
    status: revocation_status::StatusState,
    email_reply: EmailReplySettings,
    /// Seals EAB HMAC keys at rest (AES-256-GCM); `<data>/ca/eab.kek`, mode 0600.
    eab_kek: [u8; 32],
    /// Account keys parsed once, for JWS verification.
    account_keys: crate::jwk::KeyCache,
}

impl Ca {
    /// Opens the database (running migrations) and the key hierarchy, creating both if absent.
    pub fn open(settings: Settings) -> Result<Ca> {
        let storage = Storage::open(&settings.database_url, settings.database_max_connections)?;
        let (hierarchy, created) = Hierarchy::load_or_create(&settings.data_dir.join("ca"), &settings.organization)?;
        let clock = Clock::default();
        if created {
            let now = clock.unix();
            storage.write(|conn| {
                for track in Track::ALL {
                    let issuer = hierarchy.issuer(track);
                    audit::append(
                        conn,
                        &audit::AuditEvent::new(
                            track,
                            now,
                            "system",
                            "ca.issuer-created",
                            format!("issuer:{track}"),
                            serde_json::json!({ "ski": crate::ids::hex(&issuer.subject_key_identifier) }),
                        ),
                    )?;
                }
                Ok(())
            })?;
        }
        let nonces = nonces::NonceStore::new(storage.backend(), settings.nonce_lifetime_seconds);
        let eab_kek = load_or_create_kek(&settings.data_dir.join("ca").join("eab.kek"))?;
        Ok(Ca {
            storage,
            hierarchy,
            clock,
            machine: settings.machine,
            human: settings.human,
            public_url: settings.public_url.trim_end_matches('/').to_string(),
            nonces,
            revocation: settings.revocation,
            status: revocation_status::StatusState::new(),
            email_reply: settings.email_reply,
            eab_kek,
            account_keys: crate::jwk::KeyCache::new(ACCOUNT_KEYS_KEPT),
        })
    }

    pub fn policy(&self, track: Track) -> &TrackPolicy {
        match track {
            Track::Machine => &self.machine,
            Track::Human => &self.human,
        }
    }

    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// Whether a front end should make its calls in place, on its own thread, and await their
    /// durability (`in_place`), rather than hand them to a blocking pool
    /// (`Storage::runs_in_place`).
    pub fn calls_in_place(&self) -> bool {
        self.storage.runs_in_place()
    }

    /// On a SQLite database file: commits since start, the fsyncs of the log that made them
    /// durable, and the log's checkpoints (`Storage::commit_counts`).
    pub fn commit_counts(&self) -> Option<crate::storage::CommitCounts> {
        self.storage.commit_counts()
    }

    /// Runs `f` on this thread; what it returns may be shown once the `Durability` is awaited.
    pub fn in_place<T>(&self, f: impl FnOnce() -> T) -> (T, crate::storage::Durability) {
        self.storage.in_place(f)
    }

    /// The URLs a certificate of this track and profile carries.
    pub fn certificate_urls(&self, track: Track, profile: &crate::policy::Profile) -> CertificateUrls {
        let short_lived = track == Track::Machine && profile.lifetime_seconds <= 7 * 24 * 3600;
        let omit = self.revocation.omit_urls_for_short_lived && short_lived;
        CertificateUrls {
            crl: (!omit).then(|| format!("{}/crl/{track}.crl", self.public_url)),
            ocsp: (!omit).then(|| format!("{}/ocsp/{track}", self.public_url)),
            ca_issuers: format!("{}/ca/{track}.der", self.public_url),
        }
    }

    /// The chain a client gets after its leaf: the track's issuing CA.
    pub fn chain_pem(&self, track: Track) -> &str {
        &self.hierarchy.issuer(track).cert_pem
    }
}

fn load_or_create_kek(path: &std::path::Path) -> Result<[u8; 32]> {
    if !path.exists() {
        let key = crate::ids::random_bytes::<32>();
        crate::hierarchy::write_secret(path, &crate::ids::hex(&key))?;
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| crate::Error::internal(format!("read {}: {e}", path.display())))?;
    let bytes = crate::ids::unhex(text.trim()).filter(|b| b.len() == 32);
    let bytes =
        bytes.ok_or_else(|| crate::Error::internal(format!("{} does not hold 32 hex bytes", path.display())))?;
    let mut key = [0u8; 32];
    key.copy_from_slice(&bytes);
    Ok(key)
}
