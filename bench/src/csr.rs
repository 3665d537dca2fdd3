//! The certificate key and the CSR (RFC 2986) of one issuance, made fresh for every flow.

use std::net::IpAddr;

use anyhow::{Context, Result};
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::stack::Stack;
use openssl::x509::extension::SubjectAlternativeName;
use openssl::x509::X509Req;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    P256,
    P384,
    Rsa2048,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identifier {
    Ip(IpAddr),
    Dns(String),
}

impl Identifier {
    pub fn kind(&self) -> &'static str {
        match self {
            Identifier::Ip(_) => "ip",
            Identifier::Dns(_) => "dns",
        }
    }

    pub fn value(&self) -> String {
        match self {
            Identifier::Ip(ip) => ip.to_string(),
            Identifier::Dns(name) => name.clone(),
        }
    }
}

impl std::fmt::Display for Identifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind(), self.value())
    }
}

/// A new key of `key_type` and a CSR signed with it that asks for `identifier` alone, in
/// subjectAltName, with an empty subject. Returns the key's SubjectPublicKeyInfo (DER), which
/// the downloaded leaf must carry, and the CSR (DER).
///
/// EC keys and their CSRs are made with rcgen on ring: with OpenSSL 3 (its curve group built
/// afresh each time, its provider look-ups, a blocking-pool hand-off) the generator spent about
/// 0.17 ms more CPU per flow (BENCHMARKS.md), time the servers under test had to share the
/// cores with. ring cannot make RSA keys, so RSA stays with OpenSSL; such a key takes tens of
/// milliseconds anyway.
pub fn generate(key_type: KeyType, identifier: &Identifier) -> Result<(Vec<u8>, Vec<u8>)> {
    let algorithm = match key_type {
        KeyType::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyType::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        KeyType::Rsa2048 => return rsa_csr(identifier),
    };
    let key = rcgen::KeyPair::generate_for(algorithm)?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.subject_alt_names = vec![match identifier {
        Identifier::Ip(ip) => rcgen::SanType::IpAddress(*ip),
        Identifier::Dns(name) => rcgen::SanType::DnsName(name.clone().try_into()?),
    }];
    let csr = params.serialize_request(&key)?;
    Ok((rcgen::PublicKeyData::subject_public_key_info(&key), csr.der().to_vec()))
}

fn rsa_csr(identifier: &Identifier) -> Result<(Vec<u8>, Vec<u8>)> {
    let key = PKey::from_rsa(Rsa::generate(2048)?)?;
    let mut builder = X509Req::builder()?;
    builder.set_version(0)?;
    builder.set_pubkey(&key)?;
    let mut san = SubjectAlternativeName::new();
    match identifier {
        Identifier::Ip(ip) => san.ip(&ip.to_string()),
        Identifier::Dns(name) => san.dns(name),
    };
    let san = san.build(&builder.x509v3_context(None)).context("building subjectAltName")?;
    let mut extensions = Stack::new()?;
    extensions.push(san)?;
    builder.add_extensions(&extensions)?;
    builder.sign(&key, MessageDigest::sha256())?;
    Ok((key.public_key_to_der()?, builder.build().to_der()?))
}

/// Whether the first certificate of a PEM chain carries the public key whose
/// SubjectPublicKeyInfo is `spki`. x509-parser reads the leaf's SPKI as it is encoded; OpenSSL 3
/// set up a decoder and an encoder for it, a fifth of the generator's CPU.
pub fn leaf_matches_key(pem_chain: &[u8], spki: &[u8]) -> Result<bool> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem_chain).context("the certificate download is not PEM")?;
    let leaf = pem.parse_x509().context("the first certificate of the download")?;
    Ok(leaf.tbs_certificate.subject_pki.raw == spki)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_names_the_identifier_and_verifies() {
        for (key_type, identifier) in [
            (KeyType::P256, Identifier::Ip("127.0.0.1".parse().unwrap())),
            (KeyType::P384, Identifier::Dns("bench.example.test".into())),
            (KeyType::Rsa2048, Identifier::Dns("rsa.example.test".into())),
        ] {
            let (spki, der) = generate(key_type, &identifier).unwrap();
            let csr = X509Req::from_der(&der).unwrap();
            let key = csr.public_key().unwrap();
            assert_eq!(key.public_key_to_der().unwrap(), spki, "{key_type:?}");
            assert!(csr.verify(&key).unwrap(), "{key_type:?}");
            assert_eq!(csr.subject_name().entries().count(), 0, "{key_type:?}: the subject is empty");
            let text = String::from_utf8(csr.to_text().unwrap()).unwrap();
            let expected = match &identifier {
                Identifier::Ip(ip) => format!("IP Address:{ip}"),
                Identifier::Dns(name) => format!("DNS:{name}"),
            };
            assert!(text.contains(&expected), "{text}");
        }
    }

    /// The leaf check compares the downloaded leaf's SubjectPublicKeyInfo with the CSR key's.
    #[test]
    fn leaf_check_compares_the_leafs_key() {
        let issuer = rcgen::KeyPair::generate().unwrap();
        let ca =
            rcgen::CertificateParams::new(vec!["ca.example.test".to_string()]).unwrap().self_signed(&issuer).unwrap();
        let (spki, csr) = generate(KeyType::P256, &Identifier::Ip("127.0.0.1".parse().unwrap())).unwrap();
        let request = rcgen::CertificateSigningRequestParams::from_der(&csr.into()).unwrap();
        let issuer = rcgen::Issuer::new(rcgen::CertificateParams::default(), issuer);
        let leaf = request.signed_by(&issuer).unwrap();
        let chain = format!("{}{}", leaf.pem(), ca.pem());
        assert!(leaf_matches_key(chain.as_bytes(), &spki).unwrap());
        let (other, _) = generate(KeyType::P256, &Identifier::Ip("127.0.0.1".parse().unwrap())).unwrap();
        assert!(!leaf_matches_key(chain.as_bytes(), &other).unwrap());
        assert!(leaf_matches_key(b"not pem", &spki).is_err());
    }
}
