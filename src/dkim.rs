//! DKIM signing (RFC 6376) of the mail dualca sends, with the key in `[mail] dkim_key_file`:
//! RSA-SHA256 with a key of 2048 bits or more (RFC 8301), or Ed25519-SHA256 (RFC 8463).
//! RFC 8823 §3.1 requires a challenge mail to be signed with DKIM or S/MIME, so that the
//! person's client can tell it from a forgery; every other mail is signed the same way.
//!
//! Canonicalization is relaxed/relaxed, which survives relays that refold headers or re-space
//! lines. The headers RFC 8823 §3.1 names are all signed, those a message lacks as absent, and
//! each one present is listed once more than it occurs (RFC 6376 §8.15), so that a header added
//! on the way breaks the signature instead of being shown above the signed one.
//!
//! The key is openssl's, as every other key of the CA: lettre's own `dkim` module would bring
//! the `rsa` crate, whose private-key operations are not constant-time (RUSTSEC-2023-0071).

use std::path::Path;

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use openssl::hash::{hash, MessageDigest};
use openssl::pkey::{Id, PKey, Private};
use openssl::sign::Signer;

/// The signed headers, in the order they are hashed.
const SIGNED_HEADERS: &[&str] = &[
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "in-reply-to",
    "references",
    "auto-submitted",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
];

/// RSA keys shorter than this are refused (RFC 8301 §3.2: signers SHOULD use at least 2048).
const MIN_RSA_BITS: u32 = 2048;

pub struct DkimSigner {
    domain: String,
    selector: String,
    key: PKey<Private>,
    algorithm: Algorithm,
}

/// Names the key's kind, never its bytes.
impl std::fmt::Debug for DkimSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DkimSigner")
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Algorithm {
    RsaSha256,
    Ed25519Sha256,
}

impl DkimSigner {
    /// Reads a PEM private key (PKCS#8, or PKCS#1 for RSA) and checks the selector and
    /// domain, so that a mistake stops the server at start-up rather than every mail later.
    pub fn from_pem_file(path: &Path, domain: &str, selector: &str) -> Result<DkimSigner> {
        let pem = std::fs::read(path).with_context(|| format!("[mail] read dkim_key_file {}", path.display()))?;
        let key = PKey::private_key_from_pem(&pem)
            .with_context(|| format!("[mail] dkim_key_file {} is not a PEM private key", path.display()))?;
        DkimSigner::new(key, domain, selector)
    }

    fn new(key: PKey<Private>, domain: &str, selector: &str) -> Result<DkimSigner> {
        let algorithm = match key.id() {
            Id::RSA if key.bits() >= MIN_RSA_BITS => Algorithm::RsaSha256,
            Id::RSA => bail!("[mail] dkim_key_file: an RSA key of {} bits; DKIM keys need {MIN_RSA_BITS}", key.bits()),
            Id::ED25519 => Algorithm::Ed25519Sha256,
            _ => bail!("[mail] dkim_key_file: DKIM signs with an RSA or an Ed25519 key, not this one"),
        };
        if !is_dns_name(selector) {
            bail!("[mail] dkim_selector {selector:?} is not a DNS label sequence (for example \"mail2026\")");
        }
        if !is_dns_name(domain) {
            bail!("[mail] dkim_domain {domain:?} is not a domain name");
        }
        Ok(DkimSigner { domain: domain.to_ascii_lowercase(), selector: selector.to_string(), key, algorithm })
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    pub fn selector(&self) -> &str {
        &self.selector
    }

    /// The TXT record to publish at `<selector>._domainkey.<domain>` (RFC 6376 §3.6.1): the
    /// public key as DER SubjectPublicKeyInfo for RSA, the raw 32 bytes for Ed25519
    /// (RFC 8463 §4.2).
    pub fn dns_record(&self) -> Result<String> {
        let (k, public) = match self.algorithm {
            Algorithm::RsaSha256 => ("rsa", self.key.public_key_to_der()?),
            Algorithm::Ed25519Sha256 => ("ed25519", self.key.raw_public_key()?),
        };
        Ok(format!("v=DKIM1; k={k}; p={}", STANDARD.encode(public)))
    }

    /// The name the record is published under.
    pub fn dns_name(&self) -> String {
        format!("{}._domainkey.{}", self.selector, self.domain)
    }

    /// `message` (CRLF line ends, as lettre formats it) with a `DKIM-Signature` header in
    /// front, signed at `now` (Unix seconds).
    pub fn sign(&self, message: &[u8], now: i64) -> Result<Vec<u8>> {
        let (head, body) = split_message(message);
        let fields = header_fields(head);
        let body_hash = hash(MessageDigest::sha256(), &relaxed_body(body))?;

        let mut names = Vec::new();
        let mut hashed = Vec::new();
        for name in SIGNED_HEADERS {
            // Bottom-up, as a verifier takes them (RFC 6376 §5.4.2), then once more for the
            // instance that must not be there.
            let present: Vec<&&[u8]> =
                fields.iter().filter(|field| field_name(field).eq_ignore_ascii_case(name.as_bytes())).collect();
            for field in present.iter().rev() {
                hashed.extend_from_slice(&relaxed_header(field));
            }
            names.extend(std::iter::repeat_n(*name, present.len() + 1));
        }
        let algorithm = match self.algorithm {
            Algorithm::RsaSha256 => "rsa-sha256",
            Algorithm::Ed25519Sha256 => "ed25519-sha256",
        };
        let unsigned = format!(
            "DKIM-Signature: v=1; a={algorithm}; c=relaxed/relaxed;\r\n\td={}; s={}; t={now};\r\n\th={};\r\n\tbh={};\r\n\tb=",
            self.domain,
            self.selector,
            fold_list(&names),
            STANDARD.encode(body_hash)
        );
        let mut own = relaxed_header(unsigned.as_bytes());
        own.truncate(own.len() - 2); // §3.7: the signature's own header goes in without its CRLF
        hashed.extend_from_slice(&own);
        let signature = match self.algorithm {
            Algorithm::RsaSha256 => Signer::new(MessageDigest::sha256(), &self.key)?.sign_oneshot_to_vec(&hashed)?,
            // RFC 8463 §3: Ed25519 signs the SHA-256 hash of what RSA would sign.
            Algorithm::Ed25519Sha256 => {
                let digest = hash(MessageDigest::sha256(), &hashed)?;
                Signer::new_without_digest(&self.key)?.sign_oneshot_to_vec(&digest)?
            }
        };
        let encoded = STANDARD.encode(signature);
        let mut signed = unsigned.into_bytes();
        // Folded within the b= value, whose whitespace a verifier ignores (§3.5).
        for (i, chunk) in encoded.as_bytes().chunks(72).enumerate() {
            if i > 0 {
                signed.extend_from_slice(b"\r\n\t ");
            }
            signed.extend_from_slice(chunk);
        }
        signed.extend_from_slice(b"\r\n");
        signed.extend_from_slice(message);
        Ok(signed)
    }
}

/// `a:b:c`, folded so that no line of the header grows past 78 characters.
fn fold_list(names: &[&str]) -> String {
    let mut out = String::new();
    let mut line = 4; // "\th="
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.push(':');
            line += 1;
            if line + name.len() > 76 {
                out.push_str("\r\n\t ");
                line = 2;
            }
        }
        out.push_str(name);
        line += name.len();
    }
    out
}

fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// The header block (each field with its CRLF) and the body, split at the first empty line.
fn split_message(message: &[u8]) -> (&[u8], &[u8]) {
    match message.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(at) => (&message[..at + 2], &message[at + 4..]),
        None => (message, &[]),
    }
}

/// Each header field, continuation lines included, with its final CRLF.
fn header_fields(head: &[u8]) -> Vec<&[u8]> {
    let mut fields: Vec<&[u8]> = Vec::new();
    let mut start = 0;
    let mut at = 0;
    while at < head.len() {
        let end = head[at..].windows(2).position(|w| w == b"\r\n").map_or(head.len(), |p| at + p + 2);
        let continues = matches!(head.get(end), Some(b' ' | b'\t'));
        if !continues {
            fields.push(&head[start..end]);
            start = end;
        }
        at = end;
    }
    fields
}

fn field_name(field: &[u8]) -> &[u8] {
    let name = field.split(|&b| b == b':').next().unwrap_or(field);
    trim_wsp(name)
}

fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim_wsp(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| !is_wsp(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|&b| !is_wsp(b)).map_or(start, |p| p + 1);
    &bytes[start..end]
}

/// Runs of spaces and tabs as one space.
fn collapse_wsp(bytes: &[u8], out: &mut Vec<u8>) {
    let mut in_wsp = false;
    for &b in bytes {
        if is_wsp(b) {
            if !in_wsp {
                out.push(b' ');
            }
            in_wsp = true;
        } else {
            out.push(b);
            in_wsp = false;
        }
    }
}

/// RFC 6376 §3.4.2: the name in lower case, the value unfolded with its whitespace runs as one
/// space and none around the colon or at the end, then CRLF.
fn relaxed_header(field: &[u8]) -> Vec<u8> {
    let colon = field.iter().position(|&b| b == b':').unwrap_or(field.len());
    let mut out: Vec<u8> = trim_wsp(&field[..colon]).to_ascii_lowercase();
    out.push(b':');
    let unfolded: Vec<u8> =
        field.get(colon + 1..).unwrap_or(&[]).iter().copied().filter(|&b| b != b'\r' && b != b'\n').collect();
    collapse_wsp(trim_wsp(&unfolded), &mut out);
    out.extend_from_slice(b"\r\n");
    out
}

/// RFC 6376 §3.4.4: each line's whitespace runs as one space and none at its end, and no empty
/// lines at the end; a body that is then empty stays empty (erratum 3192), any other ends in CRLF.
fn relaxed_body(body: &[u8]) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = body
        .split(|&b| b == b'\n')
        .map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let mut out = Vec::with_capacity(line.len());
            collapse_wsp(line, &mut out);
            if out.last() == Some(&b' ') {
                out.pop();
            }
            out
        })
        .collect();
    while lines.last().is_some_and(Vec::is_empty) {
        lines.pop();
    }
    let mut out = Vec::with_capacity(body.len());
    for line in lines {
        out.extend_from_slice(&line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;
    use openssl::rsa::Rsa;
    use openssl::sign::Verifier;

    use super::*;

    /// RFC 6376 §3.4.5's example, both halves.
    #[test]
    fn relaxed_canonicalization_matches_the_rfc_example() {
        let message = b"A: X\r\nB : Y\t\r\n\tZ  \r\n\r\n C \r\nD \t E\r\n\r\n\r\n";
        let (head, body) = split_message(message);
        let canonical: Vec<u8> = header_fields(head).iter().flat_map(|f| relaxed_header(f)).collect();
        assert_eq!(canonical, b"a:X\r\nb:Y Z\r\n");
        assert_eq!(relaxed_body(body), b" C\r\nD E\r\n");
        assert_eq!(relaxed_body(b""), b"");
        assert_eq!(relaxed_body(b"\r\n\r\n"), b"");
        assert_eq!(relaxed_body(b"no end"), b"no end\r\n");
    }

    fn message() -> Vec<u8> {
        b"From: dualca <ca@example.test>\r\nTo: alice@example.test\r\nSubject: ACME: abc\r\n \
          folded\r\nMessage-ID: <1@example.test>\r\n\r\nbody  line \r\n\r\n"
            .to_vec()
    }

    /// The hashed data a verifier rebuilds from the signed message: the listed headers
    /// bottom-up, then the signature header with its b= value emptied, without its CRLF.
    fn verifier_input(signed: &[u8]) -> (Vec<u8>, Vec<u8>, String) {
        let (head, body) = split_message(signed);
        let fields = header_fields(head);
        let own = String::from_utf8(fields[0].to_vec()).unwrap();
        let tags: String = own.split_once(':').unwrap().1.chars().filter(|c| !c.is_whitespace()).collect();
        let tag = |name: &str| {
            tags.split(';')
                .find_map(|t| t.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("{name} in {own}"))
                .to_string()
        };
        assert_eq!(STANDARD.encode(hash(MessageDigest::sha256(), &relaxed_body(body)).unwrap()), tag("bh"));
        let mut used = vec![false; fields.len()];
        let mut data = Vec::new();
        for name in tag("h").split(':') {
            if let Some(i) = (1..fields.len())
                .rev()
                .find(|&i| !used[i] && field_name(fields[i]).eq_ignore_ascii_case(name.as_bytes()))
            {
                used[i] = true;
                data.extend_from_slice(&relaxed_header(fields[i]));
            }
        }
        // The b= tag's value emptied: the tag whose name, after its whitespace, is `b`.
        let mut start = own.find(':').unwrap() + 1;
        let b_value_start = loop {
            let segment = &own[start..];
            let trimmed = segment.trim_start();
            if let Some(rest) = trimmed.strip_prefix("b=") {
                break own.len() - rest.len();
            }
            start += segment.find(';').unwrap() + 1;
        };
        let emptied = format!("{}\r\n", &own[..b_value_start]);
        let mut own_canonical = relaxed_header(emptied.as_bytes());
        own_canonical.truncate(own_canonical.len() - 2);
        data.extend_from_slice(&own_canonical);
        let signature = STANDARD.decode(tag("b")).unwrap();
        (data, signature, tags)
    }

    #[test]
    fn rsa_signature_verifies_over_the_signed_headers() {
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let signer = DkimSigner::new(key.clone(), "Example.test", "sel1").unwrap();
        let signed = signer.sign(&message(), 1_700_000_000).unwrap();
        assert!(signed.ends_with(&message()));
        let (data, signature, tags) = verifier_input(&signed);
        assert!(tags.contains("a=rsa-sha256;c=relaxed/relaxed;d=example.test;s=sel1;t=1700000000;"), "{tags}");
        assert!(
            tags.contains("h=from:from:sender:reply-to:to:to:cc:subject:subject:date:message-id:message-id:"),
            "{tags}"
        );
        let mut verifier = Verifier::new(MessageDigest::sha256(), &key).unwrap();
        assert!(verifier.verify_oneshot(&signature, &data).unwrap());
        // A header added on the way is one the signature covered as absent.
        let mut tampered = signed.clone();
        let at = tampered.windows(4).position(|w| w == b"To: ").unwrap();
        tampered.splice(at..at, b"Cc: mallory@example.test\r\n".iter().copied());
        let (data, signature, _) = verifier_input(&tampered);
        let mut verifier = Verifier::new(MessageDigest::sha256(), &key).unwrap();
        assert!(!verifier.verify_oneshot(&signature, &data).unwrap());
        let record = signer.dns_record().unwrap();
        assert!(record.starts_with("v=DKIM1; k=rsa; p=MII"), "{record}");
        assert_eq!(signer.dns_name(), "sel1._domainkey.example.test");
    }

    #[test]
    fn ed25519_signs_the_hash_of_the_signed_data() {
        let key = PKey::generate_ed25519().unwrap();
        let signer = DkimSigner::new(key.clone(), "example.test", "ed").unwrap();
        let signed = signer.sign(&message(), 1_700_000_000).unwrap();
        let (data, signature, tags) = verifier_input(&signed);
        assert!(tags.contains("a=ed25519-sha256;"), "{tags}");
        let digest = hash(MessageDigest::sha256(), &data).unwrap();
        let mut verifier = Verifier::new_without_digest(&key).unwrap();
        assert!(verifier.verify_oneshot(&signature, &digest).unwrap());
        let record = signer.dns_record().unwrap();
        assert_eq!(STANDARD.decode(record.strip_prefix("v=DKIM1; k=ed25519; p=").unwrap()).unwrap().len(), 32);
    }

    #[test]
    fn weak_or_unsuitable_keys_and_bad_names_are_refused() {
        let short = PKey::from_rsa(Rsa::generate(1024).unwrap()).unwrap();
        let error = DkimSigner::new(short, "example.test", "s").err().unwrap().to_string();
        assert!(error.contains("1024 bits") && error.contains("2048"), "{error}");
        let ec = PKey::from_ec_key(EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap())
            .unwrap();
        assert!(DkimSigner::new(ec, "example.test", "s").err().unwrap().to_string().contains("RSA or an Ed25519"));
        let ed = PKey::generate_ed25519().unwrap();
        assert!(DkimSigner::new(ed.clone(), "example.test", "a b")
            .err()
            .unwrap()
            .to_string()
            .contains("dkim_selector"));
        assert!(DkimSigner::new(ed, "exa mple", "s").err().unwrap().to_string().contains("dkim_domain"));
    }
}
