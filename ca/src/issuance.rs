//! The only code that signs end-entity certificates. `prepare` applies the track policy and
//! builds the to-be-signed certificate; it returns a `Prepared` that no other module can build,
//! and `issue` consumes it, signs, and lints the result before anyone sees it.

use std::net::IpAddr;

use rcgen::{
    CertificateParams, CrlDistributionPoint, CustomExtension, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    KeyUsagePurpose, SanType, SerialNumber, SubjectPublicKeyInfo,
};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::FromDer;

use crate::csr::{CheckedCsr, KeyKind};
use crate::hierarchy::IssuingCa;
use crate::model::{Identifier, IdentifierKind};
use crate::policy::{ExtendedKeyUsage, Profile, TrackPolicy};
use crate::{der, ids, Error, Result, Track};

/// Where relying parties find revocation status and the issuer for one track.
#[derive(Debug, Clone)]
pub struct CertificateUrls {
    pub crl: Option<String>,
    pub ocsp: Option<String>,
    pub ca_issuers: String,
}

/// What a certificate names: the order's identifiers, and URIs the CA adds itself (an asset's
/// SPIFFE ID); never anything the CSR asked for.
#[derive(Clone, Copy)]
pub struct Names<'a> {
    pub identifiers: &'a [Identifier],
    pub uris: &'a [String],
}

pub struct Prepared {
    track: Track,
    params: CertificateParams,
    spki: SubjectPublicKeyInfo,
    serial: Vec<u8>,
    identifiers: Vec<Identifier>,
    uri_count: usize,
    profile: String,
    spki_sha256: String,
}

impl Prepared {
    pub fn serial_hex(&self) -> String {
        ids::hex(&self.serial)
    }
}

pub struct Issued {
    pub serial_hex: String,
    pub der: Vec<u8>,
    pub not_before: i64,
    pub not_after: i64,
    pub identifiers: Vec<Identifier>,
    pub profile: String,
    pub spki_sha256: String,
    pub track: Track,
}

pub fn prepare(
    policy: &TrackPolicy,
    profile: &Profile,
    names: Names<'_>,
    csr: &CheckedCsr,
    urls: &CertificateUrls,
    issuer_not_after: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<Prepared> {
    let Names { identifiers, uris } = names;
    let lifetime = profile.lifetime_seconds.min(policy.max_lifetime_seconds);
    let not_before = now.replace_nanosecond(0).map_err(Error::internal)?;
    let not_after = not_before + Duration::seconds(lifetime);
    if not_after > issuer_not_after {
        return Err(Error::internal("the issuing CA expires before the certificate would"));
    }
    let mut params = CertificateParams::default();
    params.not_before = not_before;
    params.not_after = not_after;
    let serial = ids::new_serial();
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let mut dn = DistinguishedName::new();
    if let Some(first) = identifiers.iter().find(|id| id.value.len() <= 64) {
        dn.push(DnType::CommonName, first.value.clone());
    }
    params.distinguished_name = dn;
    params.subject_alt_names = identifiers.iter().map(san_for).collect::<Result<_>>()?;
    for uri in uris {
        params.subject_alt_names.push(SanType::URI(uri.clone().try_into().map_err(Error::internal)?));
    }
    // S/MIME encrypts to the key as well as signing with it: an RSA key wraps content keys
    // (keyEncipherment), an EC key agrees on them (keyAgreement, RFC 5753).
    let encrypts_mail = profile.extended_key_usages.contains(&ExtendedKeyUsage::EmailProtection);
    params.key_usages = match csr.key_kind {
        KeyKind::Rsa(_) => vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment],
        KeyKind::EcP256 | KeyKind::EcP384 if encrypts_mail => {
            vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyAgreement]
        }
        KeyKind::EcP256 | KeyKind::EcP384 => vec![KeyUsagePurpose::DigitalSignature],
    };
    params.extended_key_usages = profile
        .extended_key_usages
        .iter()
        .map(|eku| match eku {
            ExtendedKeyUsage::ServerAuth => ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsage::ClientAuth => ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsage::EmailProtection => ExtendedKeyUsagePurpose::EmailProtection,
        })
        .collect();
    params.use_authority_key_identifier_extension = true;
    // ExplicitNoCa writes basicConstraints CA:FALSE and, with it, the subject key identifier.
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    if let Some(crl) = &urls.crl {
        params.crl_distribution_points = vec![CrlDistributionPoint { uris: vec![crl.clone()] }];
    }
    params.custom_extensions = vec![CustomExtension::from_oid_content(
        der::OID_AIA,
        der::authority_info_access(urls.ocsp.as_deref(), &urls.ca_issuers),
    )];
    let spki = SubjectPublicKeyInfo::from_der(&csr.spki_der)
        .map_err(|e| Error::bad_csr(format!("the CSR's public key is not usable: {e}")))?;
    Ok(Prepared {
        track: policy.track,
        params,
        spki,
        serial,
        identifiers: identifiers.to_vec(),
        uri_count: uris.len(),
        profile: profile.name.clone(),
        spki_sha256: csr.spki_sha256.clone(),
    })
}

fn san_for(id: &Identifier) -> Result<SanType> {
    Ok(match id.kind {
        IdentifierKind::Dns => SanType::DnsName(id.value.clone().try_into().map_err(Error::internal)?),
        IdentifierKind::Ip => SanType::IpAddress(id.value.parse::<IpAddr>().map_err(Error::internal)?),
        IdentifierKind::Email => SanType::Rfc822Name(id.value.clone().try_into().map_err(Error::internal)?),
    })
}

pub fn issue(prepared: Prepared, issuer: &IssuingCa) -> Result<Issued> {
    if prepared.track != issuer.track {
        return Err(Error::internal("a certificate was prepared for one track and signed on another"));
    }
    let cert = prepared.params.signed_by(&prepared.spki, &issuer.issuer).map_err(Error::internal)?;
    let der = cert.der().to_vec();
    lint(&der, &prepared, issuer)?;
    Ok(Issued {
        serial_hex: ids::hex(&prepared.serial),
        der,
        not_before: prepared.params.not_before.unix_timestamp(),
        not_after: prepared.params.not_after.unix_timestamp(),
        identifiers: prepared.identifiers,
        profile: prepared.profile,
        spki_sha256: prepared.spki_sha256,
        track: prepared.track,
    })
}

/// Checks the signed certificate against what was prepared before it leaves this module: a
/// certificate that fails here is never stored or served.
fn lint(der: &[u8], prepared: &Prepared, issuer: &IssuingCa) -> Result<()> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).map_err(Error::internal)?;
    let fail = |what: &str| Err(Error::internal(format!("issued certificate failed lint: {what}")));
    if cert.tbs_certificate.raw_serial() != prepared.serial.as_slice() {
        return fail("serial differs from the prepared one");
    }
    if cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp()
        != prepared.params.not_after.unix_timestamp() - prepared.params.not_before.unix_timestamp()
    {
        return fail("validity differs from the profile");
    }
    let san_count = cert.subject_alternative_name().ok().flatten().map_or(0, |san| san.value.general_names.len());
    if san_count != prepared.identifiers.len() + prepared.uri_count {
        return fail("subjectAltName count differs from the order");
    }
    let aki = cert.tbs_certificate.extensions().iter().find_map(|ext| match ext.parsed_extension() {
        x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(aki) => {
            aki.key_identifier.as_ref().map(|k| k.0.to_vec())
        }
        _ => None,
    });
    if aki.as_deref() != Some(issuer.subject_key_identifier.as_slice()) {
        return fail("authority key identifier does not name the issuer");
    }
    Ok(())
}

/// Certificates the CA issues to itself rather than to subscribers.
pub enum ServiceCertificate<'a> {
    /// The HTTPS certificate of the CA's own listener, for these names.
    ServerTls(&'a [String]),
    /// A delegated OCSP responder (RFC 6960 §4.2.2.2): id-kp-OCSPSigning and ocsp-nocheck.
    OcspResponder,
}

/// id-pkix-ocsp-nocheck, RFC 6960 §4.2.2.2.1.
const OID_OCSP_NOCHECK: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 48, 1, 5];

/// Signs one of the CA's own service certificates under a new P-256 key. They go through this
/// module like every other signature, and the caller records and audits them.
pub fn issue_service_certificate(
    kind: ServiceCertificate<'_>,
    issuer: &IssuingCa,
    lifetime_days: i64,
    now: OffsetDateTime,
) -> Result<(Issued, rcgen::KeyPair)> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(Error::internal)?;
    let mut params = CertificateParams::default();
    params.not_before = now.replace_nanosecond(0).map_err(Error::internal)?;
    params.not_after = params.not_before + Duration::days(lifetime_days);
    let serial = ids::new_serial();
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    let mut dn = DistinguishedName::new();
    let mut identifiers = Vec::new();
    let profile = match kind {
        ServiceCertificate::ServerTls(names) => {
            dn.push(DnType::CommonName, names.first().cloned().unwrap_or_else(|| "localhost".into()));
            for name in names {
                let id = match name.parse::<IpAddr>() {
                    Ok(ip) => Identifier::new(IdentifierKind::Ip, ip.to_string()),
                    Err(_) => Identifier::new(IdentifierKind::Dns, name.to_ascii_lowercase()),
                };
                params.subject_alt_names.push(san_for(&id)?);
                identifiers.push(id);
            }
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            "ca-server-tls"
        }
        ServiceCertificate::OcspResponder => {
            dn.push(DnType::CommonName, format!("dualca {} OCSP Responder", issuer.track));
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::OcspSigning];
            params.custom_extensions = vec![CustomExtension::from_oid_content(OID_OCSP_NOCHECK, der::null())];
            "ocsp-responder"
        }
    };
    params.distinguished_name = dn;
    let cert = params.signed_by(&key, &issuer.issuer).map_err(Error::internal)?;
    let spki_sha256 = crate::csr::spki_fingerprint(&rcgen::PublicKeyData::subject_public_key_info(&key));
    Ok((
        Issued {
            serial_hex: ids::hex(&serial),
            der: cert.der().to_vec(),
            not_before: params.not_before.unix_timestamp(),
            not_after: params.not_after.unix_timestamp(),
            identifiers,
            profile: profile.into(),
            spki_sha256,
            track: issuer.track,
        },
        key,
    ))
}
