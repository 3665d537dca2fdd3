//! The key hierarchy: one root and one issuing intermediate per track, ECDSA P-256, kept as PEM
//! files in the data directory with the private keys at mode 0600.
//!
//! The intermediates carry EKU constraints (machine: serverAuth and clientAuth; human:
//! clientAuth and emailProtection), so a relying party that trusts only one intermediate
//! cannot be handed a certificate from the other track's profiles.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

use crate::{ids, Error, Result, Track};

pub struct IssuingCa {
    pub track: Track,
    pub cert_der: Vec<u8>,
    pub cert_pem: String,
    pub issuer: Issuer<'static, KeyPair>,
    /// The SKI, which every certificate it signs carries as its AKI (ARI's certificate
    /// identifier starts with it).
    pub subject_key_identifier: Vec<u8>,
    /// The DER subject name and the public key's bits, which OCSP CertIDs hash.
    pub subject_der: Vec<u8>,
    pub public_key_bits: Vec<u8>,
    pub not_after: time::OffsetDateTime,
}

pub struct Hierarchy {
    pub root_der: Vec<u8>,
    pub root_pem: String,
    pub machine: IssuingCa,
    pub human: IssuingCa,
    pub dir: PathBuf,
}

impl Hierarchy {
    pub fn issuer(&self, track: Track) -> &IssuingCa {
        match track {
            Track::Machine => &self.machine,
            Track::Human => &self.human,
        }
    }

    pub fn root_path(&self) -> PathBuf {
        self.dir.join("root.pem")
    }

    /// Loads the hierarchy from `dir`, creating whatever is missing. Returns whether anything
    /// was created, so the caller can audit it.
    pub fn load_or_create(dir: &Path, organization: &str) -> Result<(Self, bool)> {
        fs::create_dir_all(dir).map_err(|e| Error::internal(format!("create {}: {e}", dir.display())))?;
        let mut created = false;
        let root_key_path = dir.join("root.key");
        let root_cert_path = dir.join("root.pem");
        if !root_key_path.exists() || !root_cert_path.exists() {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(Error::internal)?;
            let mut params = ca_params(&format!("{organization} Root CA"), organization, 20 * 365, None);
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
            let cert = params.self_signed(&key).map_err(Error::internal)?;
            write_secret(&root_key_path, &key.serialize_pem())?;
            write_public(&root_cert_path, &cert.pem())?;
            // A new root invalidates any intermediate signed by an older one.
            for track in Track::ALL {
                let _ = fs::remove_file(dir.join(format!("{track}.pem")));
            }
            created = true;
        }
        let root_pem = read(&root_cert_path)?;
        let root_der = pem_to_der(&root_pem)?;
        let root_key = KeyPair::from_pem(&read(&root_key_path)?).map_err(Error::internal)?;
        let root_issuer =
            Issuer::from_ca_cert_der(&CertificateDer::from(root_der.clone()), root_key).map_err(Error::internal)?;

        let mut load_issuing = |track: Track| -> Result<IssuingCa> {
            let key_path = dir.join(format!("{track}.key"));
            let cert_path = dir.join(format!("{track}.pem"));
            if !key_path.exists() || !cert_path.exists() {
                let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(Error::internal)?;
                let title = match track {
                    Track::Machine => "Machine",
                    Track::Human => "Human",
                };
                let mut params =
                    ca_params(&format!("{organization} {title} Issuing CA"), organization, 10 * 365, Some(track));
                params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
                params.use_authority_key_identifier_extension = true;
                let cert = params.signed_by(&key, &root_issuer).map_err(Error::internal)?;
                write_secret(&key_path, &key.serialize_pem())?;
                write_public(&cert_path, &cert.pem())?;
                created = true;
            }
            let cert_pem = read(&cert_path)?;
            let cert_der = pem_to_der(&cert_pem)?;
            let key = KeyPair::from_pem(&read(&key_path)?).map_err(Error::internal)?;
            let issuer =
                Issuer::from_ca_cert_der(&CertificateDer::from(cert_der.clone()), key).map_err(Error::internal)?;
            let subject_key_identifier = subject_key_identifier(&cert_der)?;
            let (subject_der, public_key_bits, not_after) = {
                use x509_parser::prelude::FromDer;
                let (_, parsed) =
                    x509_parser::certificate::X509Certificate::from_der(&cert_der).map_err(Error::internal)?;
                (
                    parsed.tbs_certificate.subject.as_raw().to_vec(),
                    parsed.public_key().subject_public_key.data.to_vec(),
                    parsed.validity().not_after.to_datetime(),
                )
            };
            Ok(IssuingCa {
                track,
                cert_der,
                cert_pem,
                issuer,
                subject_key_identifier,
                subject_der,
                public_key_bits,
                not_after,
            })
        };
        let machine = load_issuing(Track::Machine)?;
        let human = load_issuing(Track::Human)?;
        Ok((Hierarchy { root_der, root_pem, machine, human, dir: dir.to_path_buf() }, created))
    }
}

fn ca_params(common_name: &str, organization: &str, days: i64, track: Option<Track>) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, organization);
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(days);
    params.serial_number = Some(ids::new_serial().into());
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = match track {
        None => Vec::new(),
        Some(Track::Machine) => vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
        Some(Track::Human) => vec![ExtendedKeyUsagePurpose::ClientAuth, ExtendedKeyUsagePurpose::EmailProtection],
    };
    params
}

pub fn pem_to_der(pem: &str) -> Result<Vec<u8>> {
    let x509 = openssl::x509::X509::from_pem(pem.as_bytes()).map_err(Error::internal)?;
    x509.to_der().map_err(Error::internal)
}

pub fn der_to_pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

fn subject_key_identifier(cert_der: &[u8]) -> Result<Vec<u8>> {
    let x509 = openssl::x509::X509::from_der(cert_der).map_err(Error::internal)?;
    x509.subject_key_id()
        .map(|ski| ski.as_slice().to_vec())
        .ok_or_else(|| Error::internal("CA certificate has no subject key identifier"))
}

fn read(path: &Path) -> Result<String> {
    #[cfg(unix)]
    if path.extension().is_some_and(|e| e == "key") {
        use std::os::unix::fs::PermissionsExt;
        // Keys copied in by hand may have wider modes; a CA key is readable by its owner only.
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o600));
    }
    fs::read_to_string(path).map_err(|e| Error::internal(format!("read {}: {e}", path.display())))
}

fn write_public(path: &Path, content: &str) -> Result<()> {
    fs::write(path, content).map_err(|e| Error::internal(format!("write {}: {e}", path.display())))
}

/// Writes a private key readable by the owner only; the mode is set at creation so the key is
/// never on disk with wider permissions.
pub fn write_secret(path: &Path, content: &str) -> Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| Error::internal(format!("write {}: {e}", path.display())))?;
    file.write_all(content.as_bytes()).map_err(|e| Error::internal(format!("write {}: {e}", path.display())))?;
    file.sync_all().map_err(Error::internal)
}
