//! The human track as a person's tooling meets it: enrollment through the invite, an ACME
//! account bound by the enrollment's EAB credentials, orders for the person's address, the
//! challenge mail (RFC 8823) read from the outbox, and the reply sent over SMTP to the CA's
//! intake. instant-acme has no `email` identifier, so the ACME side uses the raw JWS client.
//!
//! The tests play the organisation's trusted mail relay themselves: a reply they mean to be
//! DKIM-authenticated carries the Authentication-Results header such a relay would add after
//! verifying the signature (`dkim_pass`). No DKIM signature is computed, since verifying DKIM is
//! the relay's job, not the CA's; the CA's part, believing only a trusted authserv-id and only
//! for the From domain, is what is tested.

use std::net::SocketAddr;
use std::time::Duration;

use dualca_admin::Role;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::jws::{b64, RawClient};
use super::mail::{invite, mail_to};
use super::TestServer;
use dualca_ca::Track;

/// The authserv-id the test servers trust (`[email_reply] trusted_authserv_ids`).
pub const TRUSTED_RELAY: &str = "mx.example.test";

/// A joiner who completed the enrollment (proofing level email) and, with `helpdesk`, passed
/// a help-desk check; returns the EAB kid and key shown on the enrollment page.
pub async fn enrolled_person(server: &TestServer, email: &str, employee_id: &str, helpdesk: bool) -> (String, Vec<u8>) {
    let token = server.admin_token(Role::Helpdesk);
    let joiner =
        json!({"email": email, "display_name": "Bo", "employee_id": employee_id, "manager_email": "boss@example.test"});
    let (status, body) = server.admin_call("POST", "/admin/api/human/people", &token, joiner).await;
    assert_eq!(status, 201, "{body}");
    let (link, code) = invite(server, email).await;
    let (kid, key) = complete_enrollment(server, &link, &code).await;
    if helpdesk {
        let proof = json!({"method": "in-person", "evidence": "badge and passport at the desk"});
        let path = format!("/admin/api/human/people/{email}/proof");
        assert_eq!(server.admin_call("POST", &path, &token, proof).await.0, 200);
    }
    (kid, key)
}

/// Posts the code to an enrollment link; the EAB kid and key the page shows.
pub async fn complete_enrollment(server: &TestServer, link: &str, code: &str) -> (String, Vec<u8>) {
    let page = server.http().post(link).form(&[("code", code)]).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let field =
        |id: &str| html.split(&format!("<code id={id}>")).nth(1).unwrap().split('<').next().unwrap().to_string();
    let key = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, field("hmac")).unwrap();
    (field("kid"), key)
}

/// A human-track account bound by these EAB credentials.
pub async fn human_account(server: &TestServer, eab: (String, Vec<u8>)) -> RawClient {
    let mut client = RawClient::bare(server, Track::Human);
    client.eab = Some(eab);
    client.create_account().await;
    client
}

/// An order for one email address and its one email-reply-00 challenge.
pub struct EmailOrder {
    pub order_url: String,
    pub finalize: String,
    pub challenge_url: String,
    /// token-part2, from the challenge object.
    pub token: String,
    /// The challenge's `from`: where replies go.
    pub from: String,
}

pub async fn order_email(client: &RawClient, email: &str, profile: &str) -> EmailOrder {
    let payload = json!({"identifiers": [{"type": "email", "value": email}], "profile": profile});
    let res = client.post(&client.url("new-order"), Some(&payload)).await;
    assert_eq!(res.status, 201, "{}", res.text);
    let order = res.json();
    let authz_url = order["authorizations"][0].as_str().unwrap().to_string();
    let authz = client.post(&authz_url, None).await.json();
    assert_eq!(authz["identifier"], json!({"type": "email", "value": email}));
    let challenges = authz["challenges"].as_array().unwrap();
    assert_eq!(challenges.len(), 1, "{authz}");
    let challenge = &challenges[0];
    assert_eq!(challenge["type"], "email-reply-00");
    EmailOrder {
        order_url: res.header("location").unwrap(),
        finalize: order["finalize"].as_str().unwrap().to_string(),
        challenge_url: challenge["url"].as_str().unwrap().to_string(),
        token: challenge["token"].as_str().unwrap().to_string(),
        from: challenge["from"].as_str().unwrap().to_string(),
    }
}

/// The challenge mail to `to`, from the outbox's .eml files: token-part1 and its Message-ID.
pub async fn challenge_mail(server: &TestServer, to: &str) -> (String, String) {
    let text = mail_to(server, to, "Subject: ACME: ").await;
    challenge_fields(&text)
}

/// Every challenge mail to `to` in the outbox so far: token-part1 and Message-ID.
pub fn challenge_mails(server: &TestServer, to: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(server.settings.data_dir.join("outbox")).into_iter().flatten().flatten() {
        let text = super::mail::decode_quoted_printable(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        if text.contains(&format!("To: {to}")) && text.contains("Subject: ACME: ") {
            found.push(challenge_fields(&text));
        }
    }
    found
}

/// Waits (bounded) until the delivery loop has written out every queued mail.
pub async fn drain_outbox(server: &TestServer) {
    for _ in 0..100 {
        if server.ca.undelivered_mail(1).unwrap().is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the outbox did not drain");
}

/// The challenge mail to `to` that is not among `known` (bounded wait).
pub async fn new_challenge_mail(server: &TestServer, to: &str, known: &[(String, String)]) -> (String, String) {
    for _ in 0..100 {
        if let Some(mail) = challenge_mails(server, to).into_iter().find(|m| !known.contains(m)) {
            return mail;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no new challenge mail to {to}");
}

/// The reply signed with S/MIME (multipart/signed, detached) by `cert` and `key`; the
/// headers outside the signature, as a mail client sends them.
pub fn smime_signed_reply(
    cert: &openssl::x509::X509,
    key: &openssl::pkey::PKey<openssl::pkey::Private>,
    from: &str,
    to: &str,
    part1: &str,
    message_id: &str,
    response: &str,
) -> String {
    use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
    let content = format!(
        "Content-Type: text/plain; charset=utf-8\r\n\r\n-----BEGIN ACME RESPONSE-----\r\n{response}\r\n-----END ACME RESPONSE-----\r\n"
    );
    let flags = Pkcs7Flags::DETACHED;
    let none = openssl::stack::Stack::new().unwrap();
    let signed = Pkcs7::sign(cert, key, &none, content.as_bytes(), flags).unwrap();
    let mime = String::from_utf8(signed.to_smime(content.as_bytes(), flags).unwrap()).unwrap();
    let mail = format!("From: {from}\r\nTo: {to}\r\nSubject: Re: ACME: {part1}\r\nIn-Reply-To: {message_id}\r\n{mime}");
    mail.replace("\r\n", "\n").replace('\n', "\r\n")
}

/// token-part1 and the Message-ID of a challenge mail's text.
pub fn challenge_fields(text: &str) -> (String, String) {
    let header = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .trim()
            .to_string()
    };
    let part1 = header("Subject").strip_prefix("ACME: ").unwrap().to_string();
    (part1, header("Message-ID"))
}

/// RFC 8823 §3.2's response for this challenge and account.
pub fn response_for(part1: &str, order: &EmailOrder, client: &RawClient) -> String {
    let thumbprint = thumbprint(client);
    dualca_ca::expected_response(part1, &order.token, &thumbprint)
}

pub fn thumbprint(client: &RawClient) -> String {
    let jwk = super::jws::jwk_of(&client.key);
    let canonical = json!({"crv": jwk["crv"], "kty": "EC", "x": jwk["x"], "y": jwk["y"]}).to_string();
    b64(&openssl::sha::sha256(canonical.as_bytes()))
}

/// The Authentication-Results header a trusted relay adds after a DKIM pass for `domain`.
pub fn dkim_pass(domain: &str) -> String {
    format!("Authentication-Results: {TRUSTED_RELAY}; dkim=pass (signature verified) header.d={domain} header.s=mail")
}

/// A reply mail as a mail client writes it, with `extra_headers` on top.
pub fn reply_mail(
    extra_headers: &[String],
    from: &str,
    to: &str,
    part1: &str,
    message_id: &str,
    response: &str,
) -> String {
    let mut mail = String::new();
    for header in extra_headers {
        mail.push_str(header);
        mail.push_str("\r\n");
    }
    mail.push_str(&format!(
        "From: Bo <{from}>\r\nTo: {to}\r\nSubject: Re: ACME: {part1}\r\nIn-Reply-To: {message_id}\r\n\
         Message-ID: <{}@example.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         Here is my answer.\r\n\r\n-----BEGIN ACME RESPONSE-----\r\n{response}\r\n-----END ACME RESPONSE-----\r\n",
        dualca_ca::ids::new_id()
    ));
    mail
}

/// Sends one message over SMTP; the server's final reply (code and text) to DATA, or to the
/// first command it refused.
pub async fn smtp_send(addr: SocketAddr, mail_from: &str, rcpt: &str, data: &str) -> (u16, String) {
    let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await.unwrap().unwrap();
    let mut stream = BufReader::new(stream);
    async fn reply(stream: &mut BufReader<TcpStream>) -> (u16, String) {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(10), stream.read_line(&mut line)).await.unwrap().unwrap();
            assert!(n > 0, "the SMTP server closed the connection");
            text.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return (line[..3].parse().unwrap(), text.trim_end().to_string());
            }
        }
    }
    assert_eq!(reply(&mut stream).await.0, 220);
    for (command, expected) in [
        ("EHLO client.example.test".to_string(), 250),
        (format!("MAIL FROM:<{mail_from}>"), 250),
        (format!("RCPT TO:<{rcpt}>"), 250),
        ("DATA".into(), 354),
    ] {
        stream.get_mut().write_all(format!("{command}\r\n").as_bytes()).await.unwrap();
        let (code, text) = reply(&mut stream).await;
        if code != expected {
            return (code, text);
        }
    }
    let mut body = String::new();
    for line in data.split_inclusive("\r\n") {
        if line.starts_with('.') {
            body.push('.');
        }
        body.push_str(line);
    }
    if !body.ends_with("\r\n") {
        body.push_str("\r\n");
    }
    body.push_str(".\r\n");
    stream.get_mut().write_all(body.as_bytes()).await.unwrap();
    let answer = reply(&mut stream).await;
    stream.get_mut().write_all(b"QUIT\r\n").await.unwrap();
    answer
}

/// Polls an order until it leaves `pending` (bounded); its JSON.
pub async fn order_after_reply(client: &RawClient, order_url: &str) -> Value {
    for _ in 0..100 {
        let order = client.post(order_url, None).await.json();
        if order["status"] != "pending" {
            return order;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the order stayed pending");
}

/// Finalizes with a CSR for `email` under a new RSA-2048 key (what mail clients use for
/// S/MIME) and downloads the chain; the chain's PEM and the key.
pub async fn finalize_email(
    client: &RawClient,
    order: &EmailOrder,
    email: &str,
) -> (String, openssl::pkey::PKey<openssl::pkey::Private>) {
    let key = openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
    let csr = email_csr(&key, email);
    let res = client.post(&order.finalize, Some(&json!({"csr": b64(&csr)}))).await;
    assert_eq!(res.status, 200, "{}", res.text);
    let mut order_json = res.json();
    for _ in 0..100 {
        if order_json["status"] == "valid" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        order_json = client.post(&order.order_url, None).await.json();
    }
    let cert_url = order_json["certificate"].as_str().unwrap();
    let chain = client.post(cert_url, None).await;
    assert_eq!(chain.status, 200, "{}", chain.text);
    (chain.text, key)
}

pub fn email_csr(key: &openssl::pkey::PKey<openssl::pkey::Private>, email: &str) -> Vec<u8> {
    use openssl::x509::extension::SubjectAlternativeName;
    let mut builder = openssl::x509::X509ReqBuilder::new().unwrap();
    builder.set_pubkey(key).unwrap();
    let ctx = builder.x509v3_context(None);
    let san = SubjectAlternativeName::new().email(email).build(&ctx).unwrap();
    let mut stack = openssl::stack::Stack::new().unwrap();
    stack.push(san).unwrap();
    builder.add_extensions(&stack).unwrap();
    builder.sign(key, openssl::hash::MessageDigest::sha256()).unwrap();
    builder.build().to_der().unwrap()
}

/// The whole flow for an enrolled person: order `email` under `profile`, answer the
/// challenge mail with a DKIM-authenticated reply through the intake, finalize. The PEM
/// chain, the leaf's key and its serial.
pub async fn issue_person_certificate(
    server: &TestServer,
    client: &RawClient,
    email: &str,
    profile: &str,
) -> (String, openssl::pkey::PKey<openssl::pkey::Private>, String) {
    // Mail still in the outbox would look new once delivered: let it out first.
    drain_outbox(server).await;
    let known = challenge_mails(server, email);
    let order = order_email(client, email, profile).await;
    let (part1, message_id) = new_challenge_mail(server, email, &known).await;
    let response = response_for(&part1, &order, client);
    let domain = email.rsplit('@').next().unwrap();
    let mail = reply_mail(&[dkim_pass(domain)], email, &order.from, &part1, &message_id, &response);
    let (code, text) = smtp_send(server.intake_addr(), email, &order.from, &mail).await;
    assert_eq!(code, 250, "{text}");
    let res = client.post(&order.challenge_url, Some(&json!({}))).await;
    assert_eq!(res.status, 200, "{}", res.text);
    let state = order_after_reply(client, &order.order_url).await;
    assert_eq!(state["status"], "ready", "{state}");
    let (chain, key) = finalize_email(client, &order, email).await;
    let serial = dualca_ca::ids::hex(&super::first_cert(&chain).serial_number().to_bn().unwrap().to_vec());
    (chain, key, serial)
}
