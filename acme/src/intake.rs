//! The SMTP intake for RFC 8823 replies: a small SMTP server (RFC 5321: HELO/EHLO, MAIL,
//! RCPT, DATA, RSET, NOOP, QUIT) that accepts mail for one address, parses each message, works
//! out how it was authenticated, and hands it to `Ca::record_email_reply`. The SMTP reply tells
//! the sending relay the verdict, so a person whose reply is refused gets a bounce that says why.
//!
//! It is meant to sit behind the organisation's mail exchanger (the "trusted relay"), which
//! verifies DKIM and records the result in an Authentication-Results header (RFC 8601), so it
//! speaks no TLS and takes connections only from `allowed_peers`. A reply counts when a header
//! whose authserv-id is one of `trusted_authserv_ids` says `dkim=pass` for the From domain, or
//! when the message is S/MIME-signed by a certificate that chains to a trust anchor and names
//! the From address.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use dualca_ca::{Ca, EmailReply, ErrorKind, ReplyAuthentication};
use mail_parser::MessageParser;
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::stack::Stack;
use openssl::x509::store::X509Store;
use openssl::x509::X509;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Messages larger than this are refused (RFC 1870 SIZE is advertised).
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// RFC 5321 §4.5.3.1.4 allows 512 octets per command line; a little more is tolerated.
const MAX_LINE_BYTES: u64 = 1000;
/// Commands per connection, messages per connection, simultaneous connections.
const MAX_COMMANDS: usize = 200;
const MAX_MESSAGES: usize = 20;
const MAX_CONNECTIONS: usize = 64;
/// RFC 5321 §4.5.3.2 suggests minutes; a relay that idles this long is dropped.
const IDLE: Duration = Duration::from_secs(60);
const DATA_TIMEOUT: Duration = Duration::from_secs(120);

const BEGIN: &str = "-----BEGIN ACME RESPONSE-----";
const END: &str = "-----END ACME RESPONSE-----";

pub struct IntakeSettings {
    /// The one recipient accepted: the challenge mails' From.
    pub address: String,
    pub allowed_peers: Vec<IpAddr>,
    pub trusted_authserv_ids: Vec<String>,
    /// Trust anchors for S/MIME signatures (dualca's root, and any configured).
    pub smime_anchors: Vec<X509>,
    /// The name this server gives in its greeting.
    pub hostname: String,
}

struct Intake {
    settings: IntakeSettings,
    store: X509Store,
    ca: Arc<Ca>,
}

/// Serves the intake on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, settings: IntakeSettings, ca: Arc<Ca>) {
    let store = match anchor_store(&settings.smime_anchors) {
        Ok(store) => store,
        Err(e) => {
            tracing::error!(error = %e, "the SMTP intake cannot build its S/MIME trust store; it is not running");
            return;
        }
    };
    let intake = Arc::new(Intake { settings, store, ca });
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "SMTP intake accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            let mut stream = stream;
            let _ = stream.write_all(b"421 4.3.2 too many connections, try again later\r\n").await;
            continue;
        };
        let intake = intake.clone();
        tokio::spawn(async move {
            if let Err(e) = intake.session(stream, peer).await {
                tracing::debug!(peer = %peer, error = %e, "SMTP intake session ended");
            }
            drop(slot);
        });
    }
}

fn anchor_store(anchors: &[X509]) -> Result<X509Store, openssl::error::ErrorStack> {
    let mut builder = openssl::x509::store::X509StoreBuilder::new()?;
    for cert in anchors {
        builder.add_cert(cert.clone())?;
    }
    Ok(builder.build())
}

/// Reads one CRLF- (or LF-) terminated line of at most `MAX_LINE_BYTES`.
async fn read_line(reader: &mut BufReader<TcpStream>, limit: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let read = tokio::time::timeout(IDLE, (&mut *reader).take(limit).read_until(b'\n', &mut line))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "idle"))??;
    if read == 0 {
        return Ok(None);
    }
    if !line.ends_with(b"\n") {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "line too long"));
    }
    Ok(Some(line))
}

/// The address inside `<...>` after `MAIL FROM:` or `RCPT TO:`.
fn path_argument(rest: &str) -> Option<&str> {
    let start = rest.find('<')?;
    let end = rest[start..].find('>')? + start;
    Some(rest[start + 1..end].trim())
}

/// One line, safe to put in an SMTP reply.
fn reply_text(text: &str) -> String {
    let flat: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    flat.chars().take(400).collect()
}

impl Intake {
    async fn session(&self, stream: TcpStream, peer: SocketAddr) -> std::io::Result<()> {
        let mut reader = BufReader::new(stream);
        if !self.settings.allowed_peers.contains(&peer.ip()) {
            tracing::warn!(peer = %peer, "SMTP intake refused a peer that is not in allowed_peers");
            reader.get_mut().write_all(b"554 5.7.1 this intake does not take mail from you\r\n").await?;
            return Ok(());
        }
        let host = &self.settings.hostname;
        reader.get_mut().write_all(format!("220 {host} dualca ACME reply intake\r\n").as_bytes()).await?;
        let mut sender: Option<String> = None;
        let mut recipient_ok = false;
        let mut messages = 0;
        for _ in 0..MAX_COMMANDS {
            let Some(line) = read_line(&mut reader, MAX_LINE_BYTES).await? else { return Ok(()) };
            let line = String::from_utf8_lossy(&line).trim_end().to_string();
            let verb = line.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
            let rest = line.get(verb.len()..).unwrap_or_default().trim_start();
            let answer: String = match verb.as_str() {
                "EHLO" => {
                    format!("250-{host}\r\n250-SIZE {MAX_MESSAGE_BYTES}\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES")
                }
                "HELO" => format!("250 {host}"),
                "MAIL" if rest.to_ascii_uppercase().starts_with("FROM:") => {
                    sender = Some(path_argument(rest).unwrap_or_default().to_string());
                    recipient_ok = false;
                    "250 2.1.0 ok".into()
                }
                "RCPT" if sender.is_none() => "503 5.5.1 MAIL first".into(),
                "RCPT" if rest.to_ascii_uppercase().starts_with("TO:") => {
                    let to = path_argument(rest).unwrap_or_default();
                    if to.eq_ignore_ascii_case(&self.settings.address) {
                        recipient_ok = true;
                        "250 2.1.5 ok".into()
                    } else {
                        format!(
                            "550 5.1.1 <{}>: this intake takes only ACME replies to <{}>",
                            reply_text(to),
                            self.settings.address
                        )
                    }
                }
                "DATA" if !recipient_ok => "503 5.5.1 RCPT first".into(),
                "DATA" => {
                    reader.get_mut().write_all(b"354 end data with <CRLF>.<CRLF>\r\n").await?;
                    let message = tokio::time::timeout(DATA_TIMEOUT, read_data(&mut reader))
                        .await
                        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "DATA"))??;
                    sender = None;
                    recipient_ok = false;
                    messages += 1;
                    match message {
                        None => format!("552 5.3.4 messages are limited to {MAX_MESSAGE_BYTES} bytes"),
                        Some(raw) => self.take_message(raw, peer).await,
                    }
                }
                "RSET" => {
                    sender = None;
                    recipient_ok = false;
                    "250 2.0.0 ok".into()
                }
                "NOOP" => "250 2.0.0 ok".into(),
                "QUIT" => {
                    reader.get_mut().write_all(b"221 2.0.0 bye\r\n").await?;
                    return Ok(());
                }
                "MAIL" | "RCPT" => "501 5.5.4 syntax: MAIL FROM:<address> / RCPT TO:<address>".into(),
                _ => "502 5.5.2 command not implemented".into(),
            };
            reader.get_mut().write_all(format!("{answer}\r\n").as_bytes()).await?;
            if messages >= MAX_MESSAGES {
                reader.get_mut().write_all(b"421 4.7.0 enough for one connection\r\n").await?;
                return Ok(());
            }
        }
        reader.get_mut().write_all(b"421 4.7.0 too many commands\r\n").await?;
        Ok(())
    }

    /// Parses, authenticates and records one message; the SMTP answer.
    async fn take_message(&self, raw: Vec<u8>, peer: SocketAddr) -> String {
        let reply = match parse_reply(&raw, &self.settings.trusted_authserv_ids, &self.store) {
            Ok(reply) => reply,
            Err(why) => {
                crate::metrics::EMAIL_REPLIES.with_label_values(&["unparsable"]).inc();
                return format!("550 5.6.0 {}", reply_text(&why));
            }
        };
        let ca = self.ca.clone();
        let for_ca = reply.clone();
        let verdict = tokio::task::spawn_blocking(move || ca.record_email_reply(&for_ca)).await;
        let (label, answer) = match verdict {
            Ok(Ok(Ok(()))) => ("accepted", "250 2.0.0 reply accepted".to_string()),
            Ok(Ok(Err(problem))) => {
                crate::metrics::VALIDATION_FAILURES.with_label_values(&["email-reply-00", problem.kind.name()]).inc();
                ("refused", format!("550 5.7.1 {}: {}", problem.kind.name(), reply_text(&problem.detail)))
            }
            Ok(Err(e)) if e.kind == ErrorKind::NotFound => {
                ("unmatched", format!("550 5.1.0 {}", reply_text(&e.detail)))
            }
            Ok(Err(e)) if e.kind == ErrorKind::Conflict => ("settled", format!("550 5.7.0 {}", reply_text(&e.detail))),
            Ok(Err(_)) | Err(_) => ("error", "451 4.3.0 the reply could not be recorded; try again later".to_string()),
        };
        crate::metrics::EMAIL_REPLIES.with_label_values(&[label]).inc();
        tracing::info!(
            peer = %peer,
            from = %reply.from,
            authentication = ?auth_kind(&reply.authentication),
            outcome = label,
            "email-reply-00 reply received"
        );
        answer
    }
}

fn auth_kind(auth: &ReplyAuthentication) -> &'static str {
    match auth {
        ReplyAuthentication::Dkim { .. } => "dkim",
        ReplyAuthentication::Smime { .. } => "smime",
        ReplyAuthentication::None { .. } => "none",
    }
}

/// The message after DATA, dot-unstuffed (RFC 5321 §4.5.2), or None when it is too large (it
/// is read to its end all the same, so the session stays in step).
async fn read_data<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    let mut message = Vec::new();
    let mut too_large = false;
    // Whether the last read ended a line: only then does a read start one, so only then can
    // it be the terminating "." or carry a stuffed dot (a longer line is read in pieces).
    let mut at_line_start = true;
    loop {
        let mut line = Vec::new();
        let read = (&mut *reader).take(MAX_LINE_BYTES * 2).read_until(b'\n', &mut line).await?;
        if read == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed in DATA"));
        }
        let starts_line = at_line_start;
        at_line_start = line.ends_with(b"\n");
        if starts_line && (line == b".\r\n" || line == b".\n") {
            return Ok((!too_large).then_some(message));
        }
        let line = if starts_line && line.starts_with(b"..") { &line[1..] } else { &line[..] };
        if message.len() + line.len() > MAX_MESSAGE_BYTES {
            too_large = true;
            message.clear();
        } else if !too_large {
            message.extend_from_slice(line);
        }
    }
}

/// Parses a reply and decides how it was authenticated. Errors are for messages that cannot
/// be a reply at all.
pub fn parse_reply(raw: &[u8], trusted_authserv_ids: &[String], store: &X509Store) -> Result<EmailReply, String> {
    let message = MessageParser::default().parse(raw).ok_or("the message does not parse")?;
    let from = message
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .ok_or("the message has no From address")?
        .to_string();
    let subject = message.subject().unwrap_or_default().to_string();
    let in_reply_to = message.in_reply_to().as_text().map(str::to_string);
    let content_type = message.header_raw("Content-Type").unwrap_or_default().to_ascii_lowercase();
    let signed = content_type.contains("multipart/signed") || content_type.contains("pkcs7-mime");
    let (authentication, body) = if signed {
        match verify_smime(raw, store) {
            Ok((signer_der, content)) => {
                // Only what the signature covers counts: the response is read from it.
                let inner = MessageParser::default().parse(&content).ok_or("the signed content does not parse")?;
                (ReplyAuthentication::Smime { signer_der }, inner.body_text(0).map(|b| b.into_owned()))
            }
            Err(why) => (
                ReplyAuthentication::None { why: format!("the S/MIME signature does not verify: {why}") },
                message.body_text(0).map(|b| b.into_owned()),
            ),
        }
    } else {
        // A signature that fails is not rescued by DKIM (above): the sender meant it to count.
        (dkim_authentication(&message, trusted_authserv_ids), message.body_text(0).map(|b| b.into_owned()))
    };
    Ok(EmailReply { from, subject, in_reply_to, response: body.as_deref().and_then(response_block), authentication })
}

/// The DKIM verdicts of trusted relays, from their Authentication-Results headers (RFC 8601).
fn dkim_authentication(message: &mail_parser::Message<'_>, trusted: &[String]) -> ReplyAuthentication {
    let mut passed = Vec::new();
    let mut seen_trusted: Option<String> = None;
    for (name, value) in message.headers_raw() {
        if !name.eq_ignore_ascii_case("Authentication-Results") {
            continue;
        }
        let Some(results) = AuthResults::parse(value) else { continue };
        if !trusted.iter().any(|t| t.eq_ignore_ascii_case(&results.authserv_id)) {
            continue;
        }
        seen_trusted = Some(results.authserv_id.clone());
        for (method, result, props) in results.results {
            if method == "dkim" && result == "pass" {
                let domain = props
                    .iter()
                    .find(|(k, _)| k == "header.d")
                    .map(|(_, v)| v.clone())
                    .or_else(|| {
                        props.iter().find(|(k, _)| k == "header.i").map(|(_, v)| v.trim_start_matches('@').to_string())
                    })
                    .map(|d| d.rsplit('@').next().unwrap_or_default().to_string());
                if let Some(domain) = domain.filter(|d| !d.is_empty()) {
                    passed.push(domain);
                }
            }
        }
        // The nearest trusted relay's header is the one to believe; any below it came from
        // further away.
        break;
    }
    match seen_trusted {
        Some(authserv_id) if !passed.is_empty() => ReplyAuthentication::Dkim { authserv_id, domains: passed },
        Some(_) => ReplyAuthentication::None { why: "the trusted relay recorded no DKIM pass".into() },
        None => ReplyAuthentication::None { why: "no Authentication-Results header from a trusted relay".into() },
    }
}

/// An Authentication-Results header: its authserv-id and each `method=result` with its
/// properties, comments removed.
struct AuthResults {
    authserv_id: String,
    results: Vec<MethodResult>,
}

/// `method=result` and its `ptype.property=value` pairs, lower-cased.
type MethodResult = (String, String, Vec<(String, String)>);

impl AuthResults {
    fn parse(value: &str) -> Option<AuthResults> {
        let text = strip_comments(value);
        let mut parts = text.split(';');
        let authserv_id = parts.next()?.split_whitespace().next()?.to_ascii_lowercase();
        let mut results = Vec::new();
        for part in parts {
            let mut tokens = part.split_whitespace();
            let Some((method, result)) = tokens.next().and_then(|t| t.split_once('=')) else { continue };
            let props = tokens
                .filter_map(|t| t.split_once('='))
                .map(|(k, v)| (k.to_ascii_lowercase(), v.trim_matches('"').to_ascii_lowercase()))
                .collect();
            results.push((method.to_ascii_lowercase(), result.to_ascii_lowercase(), props));
        }
        Some(AuthResults { authserv_id, results })
    }
}

/// Removes RFC 5322 comments (nested parentheses, with backslash escapes).
fn strip_comments(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let (mut depth, mut escaped) = (0usize, false);
    for c in value.chars() {
        match (c, depth, escaped) {
            (_, d, true) if d > 0 => escaped = false,
            ('\\', d, _) if d > 0 => escaped = true,
            ('(', _, _) => depth += 1,
            (')', d, _) if d > 0 => depth -= 1,
            (c, 0, _) => out.push(if c.is_whitespace() { ' ' } else { c }),
            _ => {}
        }
    }
    out
}

/// Verifies an S/MIME signature (multipart/signed or opaque signed-data) against `store`;
/// the signer's certificate and the content it covers.
fn verify_smime(raw: &[u8], store: &X509Store) -> Result<(Vec<u8>, Vec<u8>), String> {
    let (pkcs7, detached) = Pkcs7::from_smime(raw).map_err(|e| format!("not S/MIME: {e}"))?;
    let none = Stack::<X509>::new().map_err(|e| e.to_string())?;
    let mut content = Vec::new();
    pkcs7
        .verify(&none, store, detached.as_deref(), Some(&mut content), Pkcs7Flags::empty())
        .map_err(|e| e.errors().first().and_then(|e| e.reason()).unwrap_or("signature invalid").to_string())?;
    let signers = pkcs7.signers(&none, Pkcs7Flags::empty()).map_err(|e| e.to_string())?;
    let signer = signers.iter().next().ok_or("no signer")?;
    Ok((signer.to_der().map_err(|e| e.to_string())?, content))
}

/// The response between the BEGIN and END lines, whitespace removed.
pub fn response_block(body: &str) -> Option<String> {
    let mut lines = body.lines().map(str::trim);
    lines.by_ref().find(|l| *l == BEGIN)?;
    let mut response = String::new();
    for line in lines {
        if line == END {
            return Some(response);
        }
        response.extend(line.chars().filter(|c| !c.is_whitespace()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn data_is_unstuffed_and_ends_only_at_a_line_of_one_dot() {
        // A line longer than one read whose last piece is ".\r\n" does not end the message.
        let long = format!("{}.\r\n", "x".repeat(MAX_LINE_BYTES as usize * 2));
        let input = format!("Subject: a\r\n\r\n..stuffed\r\n{long}.\r\nQUIT\r\n");
        let mut reader = input.as_bytes();
        let message = read_data(&mut reader).await.unwrap().unwrap();
        assert_eq!(message, format!("Subject: a\r\n\r\n.stuffed\r\n{long}").into_bytes());
        assert_eq!(reader, b"QUIT\r\n", "the session goes on after the message");
        let mut unterminated = &b"no end\r\n"[..];
        assert!(read_data(&mut unterminated).await.is_err());
    }

    #[test]
    fn the_response_block_is_found_and_joined() {
        let body = "Hello\r\n\r\n-----BEGIN ACME RESPONSE-----\r\nabc\r\n def \r\n-----END ACME RESPONSE-----\r\nbye";
        assert_eq!(response_block(body).as_deref(), Some("abcdef"));
        assert_eq!(response_block("-----BEGIN ACME RESPONSE-----\nabc"), None, "no END line");
        assert_eq!(response_block("nothing here"), None);
    }

    #[test]
    fn authentication_results_are_read_without_comments() {
        let r = AuthResults::parse(
            " mx.example.org (comment; with=semicolon) 1; dkim=pass (good signature) header.d=Example.ORG \
             header.s=sel; spf=fail smtp.mailfrom=x@y",
        )
        .unwrap();
        assert_eq!(r.authserv_id, "mx.example.org");
        assert_eq!(r.results[0].0, "dkim");
        assert_eq!(r.results[0].1, "pass");
        assert!(r.results[0].2.contains(&("header.d".into(), "example.org".into())));
        assert_eq!(r.results[1].1, "fail");
        assert!(AuthResults::parse("").is_none());
    }

    #[test]
    fn only_trusted_relays_count() {
        let raw = b"Authentication-Results: evil.example; dkim=pass header.d=example.org\r\n\
Authentication-Results: mx.example.org; dkim=fail header.d=example.org\r\n\
From: Ann <ann@example.org>\r\nSubject: Re: ACME: abc\r\n\r\nbody\r\n";
        let store = anchor_store(&[]).unwrap();
        let reply = parse_reply(raw, &["mx.example.org".into()], &store).unwrap();
        assert!(matches!(reply.authentication, ReplyAuthentication::None { .. }), "{:?}", reply.authentication);
        let reply = parse_reply(raw, &["evil.example".into()], &store).unwrap();
        assert!(
            matches!(&reply.authentication, ReplyAuthentication::Dkim { domains, .. } if domains == &["example.org"])
        );
        assert_eq!(reply.from, "ann@example.org");
        assert_eq!(reply.subject, "Re: ACME: abc");
    }
}
