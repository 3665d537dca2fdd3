//! Random identifiers, and SHA-256. Resource ids, tokens, nonces and serials come from the
//! kernel's CSPRNG (`getrandom`) through ring, one system call per value; OpenSSL's
//! `RAND_bytes` cost about three times as much on the request path (its DRBG, and a `getpid`
//! fork check per call). SHA-256 is ring's too: OpenSSL 3's one-shot `SHA256()` looks the
//! algorithm up (`EVP_MD_fetch`) on every call, about 10 µs for a JWK thumbprint (BENCHMARKS.md,
//! eleventh run).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

pub fn random_bytes<const N: usize>() -> [u8; N] {
    use ring::rand::SecureRandom;
    let mut buf = [0u8; N];
    ring::rand::SystemRandom::new().fill(&mut buf).expect("the OS random source failed");
    buf
}

/// A 128-bit random id, base64url without padding (22 characters).
pub fn new_id() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<16>())
}

/// A challenge token: 128 bits of entropy as RFC 8555 §8.1 asks, base64url.
pub fn new_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// A certificate serial: 144 random bits, the top bit cleared so that the DER INTEGER stays
/// positive and the encoding keeps its 18 bytes, well above the 64 bits the BRs ask and the 128
/// the CA's own policy asks.
pub fn new_serial() -> Vec<u8> {
    let mut serial = random_bytes::<18>();
    serial[0] &= 0x7f;
    if serial[0] == 0 {
        serial[0] = 0x01;
    }
    serial.to_vec()
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_gives_the_fips_180_answers() {
        assert_eq!(hex(&sha256(b"abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(hex(&sha256(b"")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn random_values_differ() {
        assert_ne!(random_bytes::<16>(), random_bytes::<16>());
        assert_ne!(new_id(), new_id());
        assert_eq!(new_id().len(), 22);
        assert_eq!(new_token().len(), 43);
    }

    #[test]
    fn hex_is_lowercase_two_digits_per_byte_and_round_trips() {
        assert_eq!(hex(&[]), "");
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff, 0x7e]), "000fa0ff7e");
        let all: Vec<u8> = (0..=255).collect();
        let text = hex(&all);
        assert_eq!(text, all.iter().map(|b| format!("{b:02x}")).collect::<String>());
        assert_eq!(unhex(&text), Some(all));
    }
}
