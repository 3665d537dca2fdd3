//! CSR checks for finalize (RFC 8555 §7.4): the signature, the key policy, and the names. Only
//! the names and the public key are taken from a CSR; every other requested extension is
//! ignored, never copied.

use std::collections::BTreeSet;
use std::net::IpAddr;

use openssl::nid::Nid;
use openssl::pkey::Id;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use crate::model::{Identifier, IdentifierKind};
use crate::{ids, Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    EcP256,
    EcP384,
    Rsa(u32),
}

#[derive(Debug, Clone)]
pub struct CheckedCsr {
    pub spki_der: Vec<u8>,
    /// Hex SHA-256 of the SubjectPublicKeyInfo: how a key is recognised across certificates and
    /// compared with the account key.
    pub spki_sha256: String,
    pub identifiers: BTreeSet<Identifier>,
    pub key_kind: KeyKind,
    /// The RFC 7638 thumbprint of the key as a JWK, to compare with the account key.
    pub key_thumbprint: String,
}

pub fn spki_fingerprint(spki_der: &[u8]) -> String {
    ids::hex(&ids::sha256(spki_der))
}

pub fn check_csr(der: &[u8]) -> Result<CheckedCsr> {
    let req = openssl::x509::X509Req::from_der(der)
        .map_err(|_| Error::bad_csr("the CSR is not a DER-encoded PKCS#10 request"))?;
    let key = req.public_key().map_err(|_| Error::bad_csr("the CSR's public key cannot be read"))?;
    let key_kind = match key.id() {
        Id::EC => {
            let ec = key.ec_key().map_err(Error::internal)?;
            match ec.group().curve_name() {
                Some(Nid::X9_62_PRIME256V1) => KeyKind::EcP256,
                Some(Nid::SECP384R1) => KeyKind::EcP384,
                _ => return Err(Error::bad_csr("the CSR's EC key is not on P-256 or P-384")),
            }
        }
        Id::RSA => {
            let bits = key.bits();
            if !(2048..=8192).contains(&bits) {
                return Err(Error::bad_csr(format!(
                    "the CSR's RSA key has {bits} bits; between 2048 and 8192 are accepted"
                )));
            }
            KeyKind::Rsa(bits)
        }
        _ => return Err(Error::bad_csr("the CSR's key type is not accepted: use P-256, P-384 or RSA 2048+")),
    };
    if !req.verify(&key).unwrap_or(false) {
        return Err(Error::bad_csr("the CSR's signature does not verify"));
    }
    let key_thumbprint = crate::jwk::PublicJwk::from_pkey(&key)?.thumbprint;

    let (_, parsed) =
        X509CertificationRequest::from_der(der).map_err(|_| Error::bad_csr("the CSR cannot be parsed"))?;
    // The key's DER as the CSR carries it (OpenSSL has just parsed and verified with it);
    // encoding it again with OpenSSL 3 cost more than the rest of the check.
    let spki_der = parsed.certification_request_info.subject_pki.raw.to_vec();
    let mut identifiers = BTreeSet::new();
    if let Some(extensions) = parsed.requested_extensions() {
        for ext in extensions {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                for name in &san.general_names {
                    identifiers.insert(identifier_from_general_name(name)?);
                }
            }
        }
    }
    // The subject (common name included) is ignored: the certificate's subject is built from
    // the order's identifiers, never copied from the CSR.
    if identifiers.is_empty() {
        return Err(Error::bad_csr("the CSR names no identifiers"));
    }
    Ok(CheckedCsr { spki_sha256: spki_fingerprint(&spki_der), spki_der, identifiers, key_kind, key_thumbprint })
}

fn identifier_from_general_name(name: &GeneralName<'_>) -> Result<Identifier> {
    match name {
        GeneralName::DNSName(dns) => Ok(Identifier::new(IdentifierKind::Dns, dns.to_ascii_lowercase())),
        GeneralName::IPAddress(bytes) => {
            let ip = match bytes.len() {
                4 => IpAddr::from(<[u8; 4]>::try_from(*bytes).map_err(Error::internal)?),
                16 => IpAddr::from(<[u8; 16]>::try_from(*bytes).map_err(Error::internal)?),
                _ => return Err(Error::bad_csr("the CSR has a malformed iPAddress name")),
            };
            Ok(Identifier::new(IdentifierKind::Ip, ip.to_string()))
        }
        GeneralName::RFC822Name(email) => {
            let (local, domain) = email
                .rsplit_once('@')
                .ok_or_else(|| Error::bad_csr(format!("the CSR's rfc822Name {email:?} is not an address")))?;
            Ok(Identifier::new(IdentifierKind::Email, format!("{local}@{}", domain.to_ascii_lowercase())))
        }
        other => {
            Err(Error::bad_csr(format!("the CSR asks for a subjectAltName of a kind this CA does not issue: {other}")))
        }
    }
}
