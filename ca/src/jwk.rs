//! Public keys as JWKs (RFC 7517/7518/8037): parsing, RFC 7638 thumbprints, JWS signature
//! verification for the algorithms ACME accounts may use, and the reverse mapping from a
//! certificate's key to its thumbprint (so "the certificate's key" and "an account key" can be
//! compared on one footing).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcPoint};
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey};
use openssl::rsa::Rsa;
use serde_json::{json, Value};

use crate::{ids, Error, ErrorKind, Result};

/// The JWS algorithms accepted for account keys, in the order the directory advertises them.
pub const ACCEPTED_ALGORITHMS: &[&str] = &["ES256", "ES384", "RS256", "EdDSA"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    P256,
    P384,
    Rsa,
    Ed25519,
}

#[derive(Clone)]
pub struct PublicJwk {
    pub key_type: KeyType,
    /// The public key as ring verifies it: the uncompressed point for EC, the raw key for
    /// Ed25519, the big-endian modulus and exponent for RSA. Checked by OpenSSL on parsing.
    public: PublicBytes,
    /// The RFC 7638 members only, in canonical order: what is stored and hashed.
    pub canonical: String,
    pub thumbprint: String,
}

#[derive(Clone)]
enum PublicBytes {
    Point(Vec<u8>),
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

impl std::fmt::Debug for PublicJwk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicJwk({:?}, {})", self.key_type, self.thumbprint)
    }
}

fn bad_key(detail: impl Into<String>) -> Error {
    Error::new(ErrorKind::BadPublicKey, detail)
}

fn b64_field(jwk: &Value, name: &str) -> Result<Vec<u8>> {
    let text = jwk[name].as_str().ok_or_else(|| Error::malformed(format!("JWK member {name:?} is missing")))?;
    URL_SAFE_NO_PAD.decode(text).map_err(|_| Error::malformed(format!("JWK member {name:?} is not base64url")))
}

impl PublicJwk {
    /// A JWK from a client: its members read, and the key checked with OpenSSL (the EC point
    /// on its curve and of the right order, the Ed25519 encoding), so that a bad key is
    /// refused with badPublicKey when it is first presented.
    pub fn from_value(jwk: &Value) -> Result<PublicJwk> {
        let key = Self::read(jwk)?;
        key.check()?;
        Ok(key)
    }

    /// The RFC 7638 thumbprint of a JWK, without checking the key itself: for comparing a JWK
    /// with a key already checked (the one in an EAB payload with the account key, say).
    pub fn thumbprint_of(jwk: &Value) -> Result<String> {
        Ok(Self::read(jwk)?.thumbprint)
    }

    /// The members of a JWK, their encodings and sizes; the key is not checked.
    fn read(jwk: &Value) -> Result<PublicJwk> {
        if !jwk.is_object() {
            return Err(Error::malformed("jwk is not a JSON object"));
        }
        if jwk.get("d").is_some() {
            return Err(Error::malformed("jwk contains private key material"));
        }
        match jwk["kty"].as_str() {
            Some("EC") => {
                let (key_type, size) = match jwk["crv"].as_str() {
                    Some("P-256") => (KeyType::P256, 32),
                    Some("P-384") => (KeyType::P384, 48),
                    other => return Err(bad_key(format!("EC curve {other:?} is not accepted: use P-256 or P-384"))),
                };
                let x = b64_field(jwk, "x")?;
                let y = b64_field(jwk, "y")?;
                if x.len() != size || y.len() != size {
                    return Err(bad_key("EC coordinates have the wrong length"));
                }
                Ok(Self::ec(key_type, &x, &y))
            }
            Some("RSA") => {
                let n = b64_field(jwk, "n")?;
                let e = b64_field(jwk, "e")?;
                let n = strip_leading_zeros(&n);
                let e = strip_leading_zeros(&e);
                // The modulus's exact bit length, and an exponent ring verifies with (odd, at
                // least 3, below 2^33): a key refused here gets badPublicKey, not a signature
                // that never verifies.
                let bits = modulus_bits(n);
                if !(2048..=8192).contains(&bits) {
                    return Err(bad_key(format!("RSA key has {bits} bits; 2048 to 8192 are accepted")));
                }
                let exponent = e.iter().fold(0u64, |acc, b| acc.saturating_mul(256).saturating_add(u64::from(*b)));
                if e.len() > 5 || exponent < 3 || exponent % 2 == 0 || exponent >= 1 << 33 {
                    return Err(bad_key("RSA public exponent must be odd, at least 3 and below 2^33"));
                }
                Ok(Self::rsa(n, e))
            }
            Some("OKP") => {
                if jwk["crv"].as_str() != Some("Ed25519") {
                    return Err(bad_key("OKP curve is not accepted: use Ed25519"));
                }
                let x = b64_field(jwk, "x")?;
                let canonical = json!({"crv": "Ed25519", "kty": "OKP", "x": ids::b64url(&x)});
                Ok(Self::finish(KeyType::Ed25519, PublicBytes::Point(x), canonical))
            }
            other => Err(bad_key(format!("key type {other:?} is not accepted"))),
        }
    }

    /// Checks the key itself with OpenSSL.
    fn check(&self) -> Result<()> {
        match (&self.public, self.key_type) {
            (PublicBytes::Point(point), KeyType::P256 | KeyType::P384) => {
                let (nid, size) =
                    if self.key_type == KeyType::P256 { (Nid::X9_62_PRIME256V1, 32) } else { (Nid::SECP384R1, 48) };
                // P-256 and P-384 have prime order (cofactor 1): a point with coordinates
                // below the field prime that lies on the curve (an uncompressed point is never
                // the point at infinity) has the group's order. So the curve equation is the
                // whole check, with no scalar multiplication; `EcKey::check_key` would do one,
                // and `from_public_key_affine_coordinates` does it again inside.
                debug_assert_eq!(point.len(), 1 + 2 * size);
                let group = curve_group(nid)?;
                let mut ctx = BigNumContext::new().map_err(Error::internal)?;
                let on_curve = EcPoint::from_bytes(group, point, &mut ctx)
                    .and_then(|p| p.is_on_curve(group, &mut ctx))
                    .unwrap_or(false);
                if on_curve {
                    Ok(())
                } else {
                    Err(bad_key("EC point is not on the curve"))
                }
            }
            (PublicBytes::Rsa { n, e }, KeyType::Rsa) => Rsa::from_public_components(
                BigNum::from_slice(n).map_err(Error::internal)?,
                BigNum::from_slice(e).map_err(Error::internal)?,
            )
            .map(drop)
            .map_err(|_| bad_key("RSA key is invalid")),
            (PublicBytes::Point(raw), KeyType::Ed25519) => PKey::public_key_from_raw_bytes(raw, Id::ED25519)
                .map(drop)
                .map_err(|_| bad_key("Ed25519 key is invalid")),
            _ => Err(Error::internal("a JWK's key bytes do not match its type")),
        }
    }

    /// A key this CA stored after checking it (an account's): read, not checked again. ring
    /// checks an EC point on every verification anyway.
    pub fn from_stored(text: &str) -> Result<PublicJwk> {
        let value: Value = serde_json::from_str(text).map_err(|_| Error::malformed("jwk is not JSON"))?;
        Self::read(&value)
    }

    pub fn from_json(text: &str) -> Result<PublicJwk> {
        let value: Value = serde_json::from_str(text).map_err(|_| Error::malformed("jwk is not JSON"))?;
        Self::from_value(&value)
    }

    /// The JWK of a certificate's or CSR's public key, for comparison with account keys.
    /// OpenSSL has parsed and checked the key already, so it is not checked again.
    pub fn from_spki_der(spki_der: &[u8]) -> Result<PublicJwk> {
        let pkey = PKey::public_key_from_der(spki_der).map_err(|_| bad_key("public key cannot be parsed"))?;
        Self::from_pkey(&pkey)
    }

    /// The JWK of an EC key given as its uncompressed point (`04 || x || y`), not checked
    /// here: the caller has verified a signature with it (ring checks the point on its curve).
    pub(crate) fn from_verified_point(key_type: KeyType, point: &[u8]) -> Result<PublicJwk> {
        let size = match key_type {
            KeyType::P256 => 32,
            KeyType::P384 => 48,
            _ => return Err(Error::internal("an EC point for a key type that is not EC")),
        };
        if point.len() != 1 + 2 * size || point[0] != 0x04 {
            return Err(bad_key("the EC key is not an uncompressed point"));
        }
        let (x, y) = point[1..].split_at(size);
        Ok(Self::ec(key_type, x, y))
    }

    /// The JWK of an RSA key given as its big-endian modulus and exponent, with any leading
    /// zero octets (DER integers carry one before a set high bit) removed, as RFC 7518 §6.3.1
    /// wants them.
    pub(crate) fn from_rsa_components(n: &[u8], e: &[u8]) -> PublicJwk {
        Self::rsa(strip_leading_zeros(n), strip_leading_zeros(e))
    }

    /// The JWK of a key OpenSSL has parsed already (a CSR's, say).
    pub fn from_pkey(pkey: &openssl::pkey::PKeyRef<openssl::pkey::Public>) -> Result<PublicJwk> {
        match pkey.id() {
            Id::EC => {
                let ec = pkey.ec_key().map_err(Error::internal)?;
                let (key_type, size) = match ec.group().curve_name() {
                    Some(Nid::X9_62_PRIME256V1) => (KeyType::P256, 32),
                    Some(Nid::SECP384R1) => (KeyType::P384, 48),
                    _ => return Err(bad_key("EC curve is not accepted")),
                };
                let (x, y) = affine(ec.group(), ec.public_key())?;
                Ok(Self::ec(key_type, &pad(&x, size), &pad(&y, size)))
            }
            Id::RSA => {
                let rsa = pkey.rsa().map_err(Error::internal)?;
                Ok(Self::rsa(&rsa.n().to_vec(), &rsa.e().to_vec()))
            }
            Id::ED25519 => {
                let raw = pkey.raw_public_key().map_err(Error::internal)?;
                let canonical = json!({"crv": "Ed25519", "kty": "OKP", "x": ids::b64url(&raw)});
                Ok(Self::finish(KeyType::Ed25519, PublicBytes::Point(raw), canonical))
            }
            _ => Err(bad_key("key type is not accepted")),
        }
    }

    /// An EC key from its coordinates, each already the curve's size.
    fn ec(key_type: KeyType, x: &[u8], y: &[u8]) -> PublicJwk {
        let crv = if key_type == KeyType::P384 { "P-384" } else { "P-256" };
        let canonical = json!({"crv": crv, "kty": "EC", "x": ids::b64url(x), "y": ids::b64url(y)});
        let mut point = Vec::with_capacity(1 + x.len() + y.len());
        point.push(0x04);
        point.extend_from_slice(x);
        point.extend_from_slice(y);
        Self::finish(key_type, PublicBytes::Point(point), canonical)
    }

    /// An RSA key from its modulus and exponent, without leading zero octets.
    fn rsa(n: &[u8], e: &[u8]) -> PublicJwk {
        let canonical = json!({"e": ids::b64url(e), "kty": "RSA", "n": ids::b64url(n)});
        Self::finish(KeyType::Rsa, PublicBytes::Rsa { n: n.to_vec(), e: e.to_vec() }, canonical)
    }

    fn finish(key_type: KeyType, public: PublicBytes, canonical: Value) -> PublicJwk {
        let canonical = serde_json::to_string(&canonical).expect("a JSON value always serializes");
        let thumbprint = ids::b64url(&ids::sha256(canonical.as_bytes()));
        PublicJwk { key_type, public, canonical, thumbprint }
    }

    /// Whether `alg` is the JWS algorithm for this key (RFC 7518 §3.1, RFC 8037).
    pub fn algorithm_matches(&self, alg: &str) -> bool {
        matches!(
            (alg, self.key_type),
            ("ES256", KeyType::P256) | ("ES384", KeyType::P384) | ("RS256", KeyType::Rsa) | ("EdDSA", KeyType::Ed25519)
        )
    }

    /// Verifies a JWS signature over `signing_input` (`protected || '.' || payload`), with
    /// ring: no key object is built per call, and the fixed-size `r || s` form of JWS ECDSA
    /// signatures (RFC 7518 §3.4) is what ring takes.
    pub fn verify(&self, signing_input: &[u8], signature: &[u8]) -> Result<bool> {
        use ring::signature as sig;
        let ok = match (&self.public, self.key_type) {
            (PublicBytes::Point(point), KeyType::P256) => {
                sig::UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, point).verify(signing_input, signature)
            }
            (PublicBytes::Point(point), KeyType::P384) => {
                sig::UnparsedPublicKey::new(&sig::ECDSA_P384_SHA384_FIXED, point).verify(signing_input, signature)
            }
            (PublicBytes::Point(raw), KeyType::Ed25519) => {
                sig::UnparsedPublicKey::new(&sig::ED25519, raw).verify(signing_input, signature)
            }
            (PublicBytes::Rsa { n, e }, KeyType::Rsa) => {
                sig::RsaPublicKeyComponents { n, e }.verify(&sig::RSA_PKCS1_2048_8192_SHA256, signing_input, signature)
            }
            _ => return Err(Error::internal("a JWK's key bytes do not match its type")),
        };
        Ok(ok.is_ok())
    }
}

/// Parsed account keys by their stored canonical JWK: every request signed with `kid` needs
/// its account's key, and reading the JSON and base64 again each time is work for nothing.
/// The mapping from text to key never changes, so nothing needs invalidating: a key change
/// stores new text. Bounded: past `capacity` keys the cache starts again empty.
pub struct KeyCache {
    keys: std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<PublicJwk>>>,
    capacity: usize,
}

impl KeyCache {
    pub fn new(capacity: usize) -> KeyCache {
        KeyCache { keys: std::sync::Mutex::new(std::collections::HashMap::new()), capacity: capacity.max(1) }
    }

    /// The key of a stored canonical JWK, parsed once.
    pub fn get(&self, canonical: &str) -> Result<std::sync::Arc<PublicJwk>> {
        if let Some(key) = self.keys.lock().unwrap_or_else(|p| p.into_inner()).get(canonical) {
            return Ok(key.clone());
        }
        let key = std::sync::Arc::new(PublicJwk::from_stored(canonical)?);
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if keys.len() >= self.capacity {
            keys.clear();
        }
        keys.insert(canonical.to_string(), key.clone());
        Ok(key)
    }
}

/// The length in bits of a big-endian magnitude (leading zero octets ignored): an RSA modulus's
/// size, from a JWK or a CSR.
pub(crate) fn modulus_bits(modulus: &[u8]) -> u32 {
    let Some(first) = modulus.iter().position(|b| *b != 0) else { return 0 };
    let significant = &modulus[first..];
    (significant.len() as u32 - 1) * 8 + (8 - significant[0].leading_zeros())
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().take_while(|b| **b == 0).count();
    &bytes[start.min(bytes.len().saturating_sub(1))..]
}

fn pad(bytes: &[u8], size: usize) -> Vec<u8> {
    let mut out = vec![0u8; size.saturating_sub(bytes.len())];
    out.extend_from_slice(bytes);
    out
}

/// The group of P-256 or P-384, built once: OpenSSL builds a named curve's group afresh on
/// every `EC_GROUP_new_by_curve_name`, about 130 000 instructions, more than the point check it
/// serves. A group is read-only once built, and OpenSSL lets threads share it.
fn curve_group(nid: Nid) -> Result<&'static EcGroup> {
    static P256: std::sync::OnceLock<EcGroup> = std::sync::OnceLock::new();
    static P384: std::sync::OnceLock<EcGroup> = std::sync::OnceLock::new();
    let cell = match nid {
        Nid::X9_62_PRIME256V1 => &P256,
        Nid::SECP384R1 => &P384,
        _ => return Err(Error::internal("no cached group for this curve")),
    };
    if let Some(group) = cell.get() {
        return Ok(group);
    }
    let group = EcGroup::from_curve_name(nid).map_err(Error::internal)?;
    Ok(cell.get_or_init(|| group))
}

fn affine(group: &openssl::ec::EcGroupRef, point: &openssl::ec::EcPointRef) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut ctx = BigNumContext::new().map_err(Error::internal)?;
    let mut x = BigNum::new().map_err(Error::internal)?;
    let mut y = BigNum::new().map_err(Error::internal)?;
    point.affine_coordinates(group, &mut x, &mut y, &mut ctx).map_err(Error::internal)?;
    Ok((x.to_vec(), y.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::ec::EcKey;
    use openssl::ecdsa::EcdsaSig;
    use openssl::hash::MessageDigest;
    use openssl::sign::Signer;

    #[test]
    fn rfc7638_example_thumbprint() {
        // The RSA key of RFC 7638 §3.1, whose thumbprint the RFC gives.
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        let key = PublicJwk::from_value(&jwk).unwrap();
        assert_eq!(key.thumbprint, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    #[test]
    fn es256_signatures_verify_and_spki_round_trips() {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let ec = EcKey::generate(&group).unwrap();
        let private = PKey::from_ec_key(ec).unwrap();
        let spki = private.public_key_to_der().unwrap();
        let jwk = PublicJwk::from_spki_der(&spki).unwrap();
        assert!(jwk.algorithm_matches("ES256"));
        assert!(!jwk.algorithm_matches("RS256"));
        let mut signer = Signer::new(MessageDigest::sha256(), &private).unwrap();
        signer.update(b"header.payload").unwrap();
        let der_sig = EcdsaSig::from_der(&signer.sign_to_vec().unwrap()).unwrap();
        let mut raw = pad(&der_sig.r().to_vec(), 32);
        raw.extend(pad(&der_sig.s().to_vec(), 32));
        assert!(jwk.verify(b"header.payload", &raw).unwrap());
        assert!(!jwk.verify(b"header.payloaX", &raw).unwrap());
        let again = PublicJwk::from_json(&jwk.canonical).unwrap();
        assert_eq!(again.thumbprint, jwk.thumbprint);
    }

    /// An EC point off its curve, or with a coordinate at or above the field prime, is refused
    /// with badPublicKey when first read; a point on the curve is accepted, for both curves.
    #[test]
    fn ec_points_off_the_curve_are_refused() {
        for (nid, crv, size) in [(Nid::X9_62_PRIME256V1, "P-256", 32), (Nid::SECP384R1, "P-384", 48)] {
            let group = EcGroup::from_curve_name(nid).unwrap();
            let good = PublicJwk::from_spki_der(
                &PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap().public_key_to_der().unwrap(),
            )
            .unwrap();
            let value: Value = serde_json::from_str(&good.canonical).unwrap();
            assert!(PublicJwk::from_value(&value).is_ok(), "{crv}: a generated key is accepted");
            let mut y = b64_field(&value, "y").unwrap();
            y[size - 1] ^= 1;
            let off_curve = json!({"kty": "EC", "crv": crv, "x": value["x"], "y": ids::b64url(&y)});
            let err = PublicJwk::from_value(&off_curve).unwrap_err();
            assert_eq!(err.kind, ErrorKind::BadPublicKey, "{crv}: {err}");
            assert!(err.detail.contains("not on the curve"), "{crv}: {err}");
            let too_big = json!({"kty": "EC", "crv": crv, "x": ids::b64url(&vec![0xff; size]), "y": value["y"]});
            assert_eq!(PublicJwk::from_value(&too_big).unwrap_err().kind, ErrorKind::BadPublicKey, "{crv}");
        }
    }

    /// Every accepted algorithm verifies through ring with the key as parsed from its JWK, and
    /// a changed message or a signature of another key fails.
    #[test]
    fn rs256_es384_and_eddsa_verify() {
        let rsa = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let p384 =
            PKey::from_ec_key(EcKey::generate(&EcGroup::from_curve_name(Nid::SECP384R1).unwrap()).unwrap()).unwrap();
        let ed = PKey::generate_ed25519().unwrap();
        let other = PKey::generate_ed25519().unwrap();

        let rsa_jwk = PublicJwk::from_spki_der(&rsa.public_key_to_der().unwrap()).unwrap();
        let again = PublicJwk::from_json(&rsa_jwk.canonical).unwrap();
        assert_eq!(again.thumbprint, rsa_jwk.thumbprint);
        let mut signer = Signer::new(MessageDigest::sha256(), &rsa).unwrap();
        signer.update(b"h.p").unwrap();
        let sig = signer.sign_to_vec().unwrap();
        assert!(again.verify(b"h.p", &sig).unwrap());
        assert!(!again.verify(b"h.q", &sig).unwrap());

        let p384_jwk =
            PublicJwk::from_json(&PublicJwk::from_spki_der(&p384.public_key_to_der().unwrap()).unwrap().canonical)
                .unwrap();
        assert!(p384_jwk.algorithm_matches("ES384"));
        let mut signer = Signer::new(MessageDigest::sha384(), &p384).unwrap();
        signer.update(b"h.p").unwrap();
        let der_sig = EcdsaSig::from_der(&signer.sign_to_vec().unwrap()).unwrap();
        let mut raw = pad(&der_sig.r().to_vec(), 48);
        raw.extend(pad(&der_sig.s().to_vec(), 48));
        assert!(p384_jwk.verify(b"h.p", &raw).unwrap());
        assert!(!p384_jwk.verify(b"h.p", &raw[..64]).unwrap(), "a P-256-sized signature is refused");

        let ed_jwk =
            PublicJwk::from_json(&PublicJwk::from_spki_der(&ed.public_key_to_der().unwrap()).unwrap().canonical)
                .unwrap();
        let sig = Signer::new_without_digest(&ed).unwrap().sign_oneshot_to_vec(b"h.p").unwrap();
        assert!(ed_jwk.verify(b"h.p", &sig).unwrap());
        let foreign = Signer::new_without_digest(&other).unwrap().sign_oneshot_to_vec(b"h.p").unwrap();
        assert!(!ed_jwk.verify(b"h.p", &foreign).unwrap());
    }

    #[test]
    fn rsa_keys_ring_cannot_verify_with_are_refused_when_read() {
        let jwk = |n: &[u8], e: &[u8]| json!({"kty": "RSA", "n": ids::b64url(n), "e": ids::b64url(e)});
        let mut n2047 = vec![0xffu8; 256];
        n2047[0] = 0x7f;
        let err = PublicJwk::from_value(&jwk(&n2047, &[1, 0, 1])).unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadPublicKey);
        assert!(err.detail.contains("2047 bits"), "{}", err.detail);
        let n2048 = vec![0xffu8; 256];
        for e in [&[1u8][..], &[2], &[1, 0, 0]] {
            assert_eq!(PublicJwk::thumbprint_of(&jwk(&n2048, e)).unwrap_err().kind, ErrorKind::BadPublicKey);
        }
        assert!(PublicJwk::thumbprint_of(&jwk(&n2048, &[1, 0, 1])).is_ok());
    }

    #[test]
    fn key_cache_parses_once_and_stays_bounded() {
        let keys: Vec<String> = (0..3)
            .map(|_| {
                let ed = PKey::generate_ed25519().unwrap();
                PublicJwk::from_spki_der(&ed.public_key_to_der().unwrap()).unwrap().canonical
            })
            .collect();
        let cache = KeyCache::new(2);
        let first = cache.get(&keys[0]).unwrap();
        assert!(std::sync::Arc::ptr_eq(&first, &cache.get(&keys[0]).unwrap()), "a second get is the kept key");
        cache.get(&keys[1]).unwrap();
        cache.get(&keys[2]).unwrap();
        assert!(cache.keys.lock().unwrap().len() <= 2);
        assert_eq!(cache.get(&keys[0]).unwrap().thumbprint, first.thumbprint);
        assert!(cache.get("{\"kty\":\"EC\"}").is_err(), "text that is no key is an error, not kept");
        assert!(cache.keys.lock().unwrap().len() <= 2);
    }
}
