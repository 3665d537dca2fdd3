//! CSR checks for finalize (RFC 8555 §7.4): the signature, the key policy, and the names. Only
//! the names and the public key are taken from a CSR; every other requested extension is
//! ignored, never copied.

use std::collections::BTreeSet;
use std::net::IpAddr;

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION, OID_PKCS1_SHA256WITHRSA,
    OID_PKCS1_SHA384WITHRSA, OID_PKCS1_SHA512WITHRSA, OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use crate::jwk::{modulus_bits, KeyType, PublicJwk};
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

/// Parses and checks a CSR with x509-parser and ring, the libraries that verify JWS signatures
/// too: OpenSSL 3 spent most of this check setting up its decoders (see BENCHMARKS.md). The
/// signature must be ECDSA with SHA-256 or SHA-384, or RSA PKCS#1 v1.5 with SHA-256, -384 or
/// -512; SHA-1 and RSA-PSS are refused.
pub fn check_csr(der: &[u8]) -> Result<CheckedCsr> {
    let (rest, parsed) = X509CertificationRequest::from_der(der)
        .map_err(|_| Error::bad_csr("the CSR is not a DER-encoded PKCS#10 request"))?;
    if !rest.is_empty() {
        return Err(Error::bad_csr("the CSR has data after its end"));
    }
    let spki = &parsed.certification_request_info.subject_pki;
    let key = spki.parsed().map_err(|_| Error::bad_csr("the CSR's public key cannot be read"))?;
    let (key_kind, jwk) = match key {
        PublicKey::EC(point) if spki.algorithm.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY => {
            let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok());
            let (kind, key_type) = match curve {
                Some(oid) if oid == OID_EC_P256 => (KeyKind::EcP256, KeyType::P256),
                Some(oid) if oid == OID_NIST_EC_P384 => (KeyKind::EcP384, KeyType::P384),
                _ => return Err(Error::bad_csr("the CSR's EC key is not on P-256 or P-384")),
            };
            let jwk = PublicJwk::from_verified_point(key_type, point.data())
                .map_err(|_| Error::bad_csr("the CSR's EC key is not an uncompressed point"))?;
            (kind, jwk)
        }
        PublicKey::RSA(rsa) if spki.algorithm.algorithm == OID_PKCS1_RSAENCRYPTION => {
            let bits = modulus_bits(rsa.modulus);
            if !(2048..=8192).contains(&bits) {
                return Err(Error::bad_csr(format!(
                    "the CSR's RSA key has {bits} bits; between 2048 and 8192 are accepted"
                )));
            }
            (KeyKind::Rsa(bits), PublicJwk::from_rsa_components(rsa.modulus, rsa.exponent))
        }
        _ => return Err(Error::bad_csr("the CSR's key type is not accepted: use P-256, P-384 or RSA 2048+")),
    };
    let algorithm = &parsed.signature_algorithm.algorithm;
    let accepted = match key_kind {
        KeyKind::EcP256 | KeyKind::EcP384 => {
            *algorithm == OID_SIG_ECDSA_WITH_SHA256 || *algorithm == OID_SIG_ECDSA_WITH_SHA384
        }
        KeyKind::Rsa(_) => {
            [OID_PKCS1_SHA256WITHRSA, OID_PKCS1_SHA384WITHRSA, OID_PKCS1_SHA512WITHRSA].contains(algorithm)
        }
    };
    if !accepted {
        return Err(Error::bad_csr(format!(
            "the CSR's signature algorithm {algorithm} is not accepted for its key: use ECDSA or RSA PKCS#1 v1.5 with SHA-256, SHA-384 or SHA-512"
        )));
    }
    // ring checks an EC point on its curve as it verifies.
    if parsed.verify_signature().is_err() {
        return Err(Error::bad_csr("the CSR's signature does not verify"));
    }

    let spki_der = spki.raw.to_vec();
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
    Ok(CheckedCsr {
        spki_sha256: spki_fingerprint(&spki_der),
        spki_der,
        identifiers,
        key_kind,
        key_thumbprint: jwk.thumbprint,
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::{PKey, Private};
    use openssl::rsa::Rsa;
    use openssl::stack::Stack;
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::X509ReqBuilder;

    fn csr(key: &PKey<Private>, digest: MessageDigest, names: &[&str]) -> Vec<u8> {
        let mut builder = X509ReqBuilder::new().unwrap();
        builder.set_pubkey(key).unwrap();
        if !names.is_empty() {
            let mut san = SubjectAlternativeName::new();
            for name in names {
                san.dns(name);
            }
            let mut extensions = Stack::new().unwrap();
            extensions.push(san.build(&builder.x509v3_context(None)).unwrap()).unwrap();
            builder.add_extensions(&extensions).unwrap();
        }
        builder.sign(key, digest).unwrap();
        builder.build().to_der().unwrap()
    }

    fn ec(nid: Nid) -> PKey<Private> {
        PKey::from_ec_key(EcKey::generate(&EcGroup::from_curve_name(nid).unwrap()).unwrap()).unwrap()
    }

    fn rsa(bits: u32) -> PKey<Private> {
        PKey::from_rsa(Rsa::generate(bits).unwrap()).unwrap()
    }

    fn refusal(der: &[u8]) -> String {
        let e = check_csr(der).expect_err("the CSR is refused");
        assert_eq!(e.kind, crate::ErrorKind::BadCsr, "{e:?}");
        e.detail
    }

    /// The key kind and the thumbprint agree with OpenSSL's reading of the same key, for each
    /// accepted key type and signature hash.
    #[test]
    fn accepted_keys_read_as_openssl_reads_them() {
        let cases = [
            (ec(Nid::X9_62_PRIME256V1), MessageDigest::sha256(), KeyKind::EcP256),
            (ec(Nid::X9_62_PRIME256V1), MessageDigest::sha384(), KeyKind::EcP256),
            (ec(Nid::SECP384R1), MessageDigest::sha384(), KeyKind::EcP384),
            (rsa(2048), MessageDigest::sha256(), KeyKind::Rsa(2048)),
            (rsa(3072), MessageDigest::sha512(), KeyKind::Rsa(3072)),
        ];
        for (key, digest, kind) in cases {
            let checked = check_csr(&csr(&key, digest, &["a.example", "B.example"])).unwrap();
            assert_eq!(checked.key_kind, kind);
            let spki = key.public_key_to_der().unwrap();
            assert_eq!(checked.spki_der, spki);
            assert_eq!(checked.key_thumbprint, PublicJwk::from_spki_der(&spki).unwrap().thumbprint);
            let names: Vec<_> = checked.identifiers.iter().map(|i| i.value.as_str()).collect();
            assert_eq!(names, ["a.example", "b.example"]);
        }
    }

    #[test]
    fn refusals_say_why() {
        let p256 = ec(Nid::X9_62_PRIME256V1);
        let good = csr(&p256, MessageDigest::sha256(), &["a.example"]);

        let mut tampered = good.clone();
        let at = tampered.windows(9).position(|w| w == b"a.example").unwrap();
        tampered[at] = b'b';
        assert_eq!(refusal(&tampered), "the CSR's signature does not verify");

        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(refusal(&trailing), "the CSR has data after its end");
        assert_eq!(refusal(b"not a CSR"), "the CSR is not a DER-encoded PKCS#10 request");

        assert_eq!(
            refusal(&csr(&rsa(1024), MessageDigest::sha256(), &["a.example"])),
            "the CSR's RSA key has 1024 bits; between 2048 and 8192 are accepted"
        );
        assert_eq!(
            refusal(&csr(&ec(Nid::SECP521R1), MessageDigest::sha512(), &["a.example"])),
            "the CSR's EC key is not on P-256 or P-384"
        );
        let ed = PKey::generate_ed25519().unwrap();
        let mut builder = X509ReqBuilder::new().unwrap();
        builder.set_pubkey(&ed).unwrap();
        builder.sign(&ed, MessageDigest::null()).unwrap();
        assert_eq!(
            refusal(&builder.build().to_der().unwrap()),
            "the CSR's key type is not accepted: use P-256, P-384 or RSA 2048+"
        );
        assert_eq!(
            refusal(&csr(&rsa(2048), MessageDigest::sha1(), &["a.example"])),
            "the CSR's signature algorithm 1.2.840.113549.1.1.5 is not accepted for its key: use ECDSA or RSA \
             PKCS#1 v1.5 with SHA-256, SHA-384 or SHA-512"
        );
        assert_eq!(refusal(&csr(&p256, MessageDigest::sha256(), &[])), "the CSR names no identifiers");
    }

    #[test]
    fn modulus_bits_ignores_leading_zeros() {
        assert_eq!(modulus_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(modulus_bits(&[0x01, 0xff]), 9);
        assert_eq!(modulus_bits(&[0x00]), 0);
        assert_eq!(modulus_bits(&[]), 0);
    }
}
