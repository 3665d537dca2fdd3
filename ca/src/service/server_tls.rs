//! The CA's own HTTPS certificate: kept in `<data>/tls/`, re-issued when missing, close to
//! expiry, or for other names. Like every certificate it is recorded and audited.

use std::fs;
use std::path::Path;

use serde_json::json;

use super::Ca;
use crate::audit;
use crate::hierarchy::{der_to_pem, write_secret};
use crate::storage::certificates;
use crate::storage::rows::{CertificateRow, Holder};
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
        let (issued, key) = issuance::issue_service_certificate(
            issuance::ServiceCertificate::ServerTls(names),
            issuer,
            LIFETIME_DAYS,
            now,
        )?;
        self.record_service_certificate(&issued, json!({ "identifiers": names }))?;
        write_secret(&key_path, &key.serialize_pem())?;
        fs::write(&cert_path, der_to_pem(&issued.der)).map_err(Error::internal)?;
        fs::write(&names_path, &wanted).map_err(Error::internal)?;
        Ok(ServerCertificate {
            chain_der: vec![issued.der, issuer.cert_der.clone()],
            key_pkcs8_der: key.serialize_der(),
        })
    }
}

impl Ca {
    /// Records one of the CA's own certificates (HTTPS, OCSP responder) like any other, with
    /// its audit event.
    pub(super) fn record_service_certificate(
        &self,
        issued: &issuance::Issued,
        details: serde_json::Value,
    ) -> Result<()> {
        let now = self.clock.unix();
        self.storage.write(|conn| {
            certificates::insert(conn, &CertificateRow::issued(issued, Holder::default(), now))?;
            let mut details = details;
            details["profile"] = json!(issued.profile);
            details["not_after"] = json!(issued.not_after);
            audit::record(
                conn,
                issued.track,
                now,
                "system",
                "certificate.issued",
                format!("certificate:{}", issued.serial_hex),
                details,
            )?;
            Ok(())
        })
    }

    pub(super) fn make_ocsp_signer(&self, track: Track) -> Result<super::revocation_status::OcspSigner> {
        let issuer = self.hierarchy.issuer(track);
        if !self.revocation.ocsp_delegated {
            return Ok(super::revocation_status::OcspSigner {
                key: None,
                key_hash: openssl::sha::sha1(&issuer.public_key_bits).to_vec(),
                certificate: None,
                not_after: issuer.not_after.unix_timestamp(),
            });
        }
        let (issued, key) = issuance::issue_service_certificate(
            issuance::ServiceCertificate::OcspResponder,
            issuer,
            30,
            self.clock.now(),
        )?;
        self.record_service_certificate(&issued, json!({}))?;
        Ok(super::revocation_status::OcspSigner {
            key_hash: openssl::sha::sha1(key.public_key_raw()).to_vec(),
            key: Some(key),
            certificate: Some(issued.der),
            not_after: issued.not_after,
        })
    }
}
