//! The certificate key and the CSR (RFC 2986) of one issuance, made fresh for every flow.

use std::net::IpAddr;

use anyhow::{Context, Result};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::stack::Stack;
use openssl::x509::extension::SubjectAlternativeName;
use openssl::x509::{X509Req, X509};
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

fn ec_key(curve: Nid) -> Result<PKey<Private>> {
    let group = EcGroup::from_curve_name(curve)?;
    Ok(PKey::from_ec_key(EcKey::generate(&group)?)?)
}

/// A new key of `key_type` and a CSR signed with it that asks for `identifier` alone, in
/// subjectAltName, with an empty subject.
pub fn generate(key_type: KeyType, identifier: &Identifier) -> Result<(PKey<Private>, Vec<u8>)> {
    let (key, digest) = match key_type {
        KeyType::P256 => (ec_key(Nid::X9_62_PRIME256V1)?, MessageDigest::sha256()),
        KeyType::P384 => (ec_key(Nid::SECP384R1)?, MessageDigest::sha384()),
        KeyType::Rsa2048 => (PKey::from_rsa(Rsa::generate(2048)?)?, MessageDigest::sha256()),
    };
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
    builder.sign(&key, digest)?;
    Ok((key, builder.build().to_der()?))
}

/// Whether the first certificate of a PEM chain carries `key`'s public key.
pub fn leaf_matches_key(pem_chain: &[u8], key: &PKey<Private>) -> Result<bool> {
    let leaf = X509::from_pem(pem_chain).context("the certificate download is not PEM")?;
    Ok(leaf.public_key()?.public_eq(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_names_the_identifier_and_verifies() {
        for (key_type, identifier) in [
            (KeyType::P256, Identifier::Ip("127.0.0.1".parse().unwrap())),
            (KeyType::P384, Identifier::Dns("bench.example.test".into())),
        ] {
            let (key, der) = generate(key_type, &identifier).unwrap();
            let csr = X509Req::from_der(&der).unwrap();
            assert!(csr.verify(&key).unwrap());
            let text = String::from_utf8(csr.to_text().unwrap()).unwrap();
            let expected = match &identifier {
                Identifier::Ip(ip) => format!("IP Address:{ip}"),
                Identifier::Dns(name) => format!("DNS:{name}"),
            };
            assert!(text.contains(&expected), "{text}");
        }
    }
}
