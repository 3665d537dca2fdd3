//! dns-01 (RFC 8555 §8.4): a TXT record at `_acme-challenge.<domain>` holding the base64url
//! SHA-256 of the key authorization.

use dualca_ca::model::StoredProblem;
use dualca_ca::ErrorKind;
use hickory_resolver::ResolveErrorKind;

use super::{problem, sha256_b64, Validator};

pub(super) async fn validate(
    validator: &Validator,
    domain: &str,
    key_authorization: &str,
) -> Result<(), StoredProblem> {
    let name = format!("_acme-challenge.{domain}.");
    let expected = sha256_b64(key_authorization);
    let lookup = validator.resolver.txt_lookup(name.clone()).await.map_err(|e| {
        let no_records = matches!(e.kind(), ResolveErrorKind::Proto(p) if p.is_no_records_found());
        if no_records {
            problem(ErrorKind::Unauthorized, format!("no TXT record found at {name}"))
        } else {
            problem(ErrorKind::Dns, format!("DNS lookup of TXT {name} failed: {e}"))
        }
    })?;
    let mut seen = Vec::new();
    for record in lookup.iter() {
        let value: String = record.txt_data().iter().map(|part| String::from_utf8_lossy(part)).collect();
        if value == expected {
            return Ok(());
        }
        seen.push(value);
    }
    Err(problem(
        ErrorKind::IncorrectResponse,
        format!("TXT records at {name} ({}) do not hold the expected digest", seen.join(", ")),
    ))
}
