//! Random identifiers. Resource ids and tokens come from the OS CSPRNG through OpenSSL.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    openssl::rand::rand_bytes(&mut buf).expect("the OS random source failed");
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
    openssl::sha::sha256(data)
}

#[cfg(test)]
mod tests {
    use super::*;

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
