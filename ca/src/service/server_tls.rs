//! The CA's own HTTPS certificate: kept in `<data>/tls/`, re-issued when missing, close to
//! expiry, or for other names. Like every certificate it is recorded and audited.

use std::fs;
use std::path::Path;

use serde_json::json;

use super::Ca;
use crate::audit::{self, AuditEvent};
use crate::hierarchy::{der_to_pem, write_secret};
use crate::model::CertificateStatus;
use crate::storage::certificates;
use crate::storage::rows::{identifiers_to_text, CertificateRow};
use crate::{issuance, Error, Result, Track};

const LIFETIME_DAYS: i64 = 30;
const RENEW_WITHIN_SECONDS: i64 = 10 * 24 * 3600;

pub struct ServerCertificate {
    /// Leaf first, then the machine issuing CA.
    pub chain_der: Vec<Vec<u8>>,
    pub key_pkcs8_der: Vec<u8>,
}

impl Ca {
    pub fn server_certificate(&self, dir: &Path, names: &[String]) -> Result<ServerCertificate> {
        fs::create_dir_all(dir).map_err(|e| Error::internal(format!("create {}: {e}", dir.display())))?;
        let (cert_path, key_path, names_path) = (dir.join("server.pem"), dir.join("server.key"), dir.join("names"));
        let wanted = names.join(",");
        let issuer = self.hierarchy.issuer(Track::Machine);
        if let (Ok(cert_pem), Ok(key_pem), Ok(stored_names)) =
            (fs::read_to_string(&cert_path), fs::read_to_string(&key_path), fs::read_to_string(&names_path))
        {
            let cert = openssl::x509::X509::from_pem(cert_pem.as_bytes()).ok();
            let key = openssl::pkey::PKey::private_key_from_pem(key_pem.as_bytes()).ok();
            if let (Some(cert), Some(key)) = (cert, key) {
                let remaining =
                    cert.not_after().diff(openssl::asn1::Asn1Time::days_from_now(0).map_err(Error::internal)?.as_ref());
                let fresh = remaining.map(|d| i64::from(d.days) * 86400 + i64::from(d.secs)).unwrap_or(0)
                    > RENEW_WITHIN_SECONDS;
                let issuer_key = openssl::x509::X509::from_der(&issuer.cert_der)
                    .and_then(|c| c.public_key())
                    .map_err(Error::internal)?;
                let same_issuer = cert.verify(&issuer_key).unwrap_or(false);
                if fresh && same_issuer && stored_names == wanted {
                    return Ok(ServerCertificate {
                        chain_der: vec![cert.to_der().map_err(Error::internal)?, issuer.cert_der.clone()],
                        key_pkcs8_der: key.private_key_to_pkcs8().map_err(Error::internal)?,
                    });
                }
            }
        }
        let now = self.clock.now();
        let (issued, key) = issuance::issue_server_certificate(names, issuer, LIFETIME_DAYS, now)?;
        self.storage.write(|conn| {
            certificates::insert(
                conn,
                &CertificateRow {
                    serial: issued.serial_hex.clone(),
                    track: Track::Machine.as_str().into(),
                    account_id: None,
                    order_id: None,
                    asset_id: None,
                    person_id: None,
                    profile: issued.profile.clone(),
                    identifiers: identifiers_to_text(&issued.identifiers),
                    spki_sha256: issued.spki_sha256.clone(),
                    not_before: issued.not_before,
                    not_after: issued.not_after,
                    der: issued.der.clone(),
                    status: CertificateStatus::Valid.as_str().into(),
                    revocation_reason: None,
                    revoked_at: None,
                    replaced_by: None,
                    created_at: now.unix_timestamp(),
                },
            )?;
            audit::append(
                conn,
                &AuditEvent::new(
                    Track::Machine,
                    now.unix_timestamp(),
                    "system",
                    "certificate.issued",
                    format!("certificate:{}", issued.serial_hex),
                    json!({ "profile": issued.profile, "identifiers": names, "not_after": issued.not_after }),
                ),
            )
        })?;
        write_secret(&key_path, &key.serialize_pem())?;
        fs::write(&cert_path, der_to_pem(&issued.der)).map_err(Error::internal)?;
        fs::write(&names_path, &wanted).map_err(Error::internal)?;
        Ok(ServerCertificate {
            chain_der: vec![issued.der, issuer.cert_der.clone()],
            key_pkcs8_der: key.serialize_der(),
        })
    }
}
