//! Reading the mail the CA delivered to its outbox directory (.eml files, since the tests
//! configure no relay), as a person's mail reader would.

use std::time::Duration;

use super::TestServer;

/// The newest .eml in the outbox addressed to `to` and containing `needle` (bounded wait).
pub async fn mail_to(server: &TestServer, to: &str, needle: &str) -> String {
    let dir = server.settings.data_dir.join("outbox");
    for _ in 0..100 {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let text = decode_quoted_printable(&text);
            if text.contains(&format!("To: {to}")) && text.contains(needle) {
                return text;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no mail to {to} containing {needle:?}");
}

/// Undoes quoted-printable (soft line breaks and =XX), as a mail reader would.
pub fn decode_quoted_printable(text: &str) -> String {
    let joined = text.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            if let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The one-time link and code of the invite mailed to `to`.
pub async fn invite(server: &TestServer, to: &str) -> (String, String) {
    link_and_code(&mail_to(server, to, "/enroll/").await)
}

/// The one-time link and code of the recovery mailed to `to`.
pub async fn recovery_link(server: &TestServer, to: &str) -> (String, String) {
    link_and_code(&mail_to(server, to, "dualca: recover your certificates").await)
}

/// The `/enroll/` link and the 8-digit word after "code" in a mail.
pub fn link_and_code(text: &str) -> (String, String) {
    let link =
        text.split_whitespace().find(|w| w.contains("/enroll/")).unwrap().trim_end_matches(['.', ',']).to_string();
    let code: String = text
        .split_whitespace()
        .skip_while(|w| *w != "code")
        .nth(1)
        .unwrap()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    assert_eq!(code.len(), 8, "{text}");
    (link, code)
}
