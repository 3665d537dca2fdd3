//! ACME Renewal Information (RFC 9773): certificate identifiers and suggested windows.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::{ids, Error, Result};

/// Parses `base64url(AKI keyIdentifier) "." base64url(serial)` into (AKI, serial hex).
pub fn parse_cert_id(text: &str) -> Result<(Vec<u8>, String)> {
    let bad = || Error::malformed(format!("{text:?} is not an ARI certificate identifier (AKI.serial, base64url)"));
    let (aki, serial) = text.split_once('.').ok_or_else(bad)?;
    let aki = URL_SAFE_NO_PAD.decode(aki).map_err(|_| bad())?;
    let serial = URL_SAFE_NO_PAD.decode(serial).map_err(|_| bad())?;
    if aki.is_empty() || serial.is_empty() || serial.len() > 21 {
        return Err(bad());
    }
    Ok((aki, ids::hex(&serial)))
}

pub fn cert_id(aki: &[u8], serial_hex: &str) -> String {
    format!("{}.{}", ids::b64url(aki), ids::b64url(&ids::unhex(serial_hex).unwrap_or_default()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: i64,
    pub end: i64,
    /// Seconds a client should wait before asking again.
    pub retry_after: i64,
}

/// About two-thirds into the lifetime, a tenth of the lifetime wide; in the past when the
/// certificate must be replaced now (revoked, or its asset decommissioned or compromised).
pub fn suggested_window(not_before: i64, not_after: i64, replace_now: bool, now: i64) -> Window {
    let lifetime = (not_after - not_before).max(1);
    let retry_after = (lifetime / 10).clamp(60, 6 * 3600);
    if replace_now {
        return Window { start: now - 2 * 3600, end: now - 3600, retry_after };
    }
    let center = not_before + lifetime * 2 / 3;
    Window { start: center - lifetime / 20, end: center + lifetime / 20, retry_after }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_identifiers() {
        let w = suggested_window(0, 86400, false, 10);
        assert_eq!((w.start, w.end), (57600 - 4320, 57600 + 4320));
        assert_eq!(w.retry_after, 8640);
        let w = suggested_window(0, 86400, true, 50_000);
        assert!(w.end < 50_000);
        let id = cert_id(&[1, 2, 3], "00ff10");
        assert_eq!(parse_cert_id(&id).unwrap(), (vec![1, 2, 3], "00ff10".to_string()));
        assert!(parse_cert_id("nodot").is_err());
        assert!(parse_cert_id("a.@@").is_err());
    }
}
