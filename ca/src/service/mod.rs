//! The CA's operations, as the front ends call them. Each write runs in one transaction with its
//! audit event. The front ends pass domain values in and get domain values back; they never see
//! a connection.

mod accounts;
mod nonces;
mod orders;
mod revocation;
mod server_tls;

use std::path::PathBuf;

pub use accounts::NewAccount;
pub use orders::{NewOrder, ValidationTarget};
pub use revocation::Revoker;
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
}

pub struct Ca {
    pub storage: Storage,
    pub hierarchy: Hierarchy,
    pub clock: Clock,
    machine: TrackPolicy,
    human: TrackPolicy,
    public_url: String,
    nonces: nonces::NonceStore,
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
        Ok(Ca {
            storage,
            hierarchy,
            clock,
            machine: settings.machine,
            human: settings.human,
            public_url: settings.public_url.trim_end_matches('/').to_string(),
            nonces,
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

    pub fn certificate_urls(&self, track: Track) -> CertificateUrls {
        CertificateUrls {
            crl: Some(format!("{}/crl/{track}.crl", self.public_url)),
            ocsp: Some(format!("{}/ocsp/{track}", self.public_url)),
            ca_issuers: format!("{}/ca/{track}.pem", self.public_url),
        }
    }

    /// The chain a client gets after its leaf: the track's issuing CA.
    pub fn chain_pem(&self, track: Track) -> &str {
        &self.hierarchy.issuer(track).cert_pem
    }
}
