//! RFC 8823 on the human track: email identifiers for the person's own address, the challenge
//! mail delivered to a real SMTP server (aiosmtpd), replies sent over SMTP to the CA's intake,
//! and every way a reply is refused, each with its exact problem. The tests act as the trusted
//! relay that records DKIM results (see `common::human`).

use dualca_ca::Track;
use serde_json::{json, Value};

use crate::common::free_loopback_port;
use crate::common::human::*;
use crate::common::jws::RawClient;
use crate::common::{first_cert, Db, TestServer};
use crate::mail::{aiosmtpd_python, SmtpServer};
use crate::on_both_databases;

/// The newest message aiosmtpd received for `to` whose subject contains `needle`.
async fn received(smtp: &SmtpServer, to: &str, needle: &str) -> Value {
    for _ in 0..100 {
        let found = smtp.messages().into_iter().rev().find(|m| {
            m["headers"]["to"].as_str().is_some_and(|t| t.contains(to))
                && m["headers"]["subject"].as_str().is_some_and(|s| s.contains(needle))
        });
        if let Some(message) = found {
            return message;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("aiosmtpd received no mail to {to} about {needle:?}");
}

fn text_part(message: &Value) -> String {
    message["parts"]["text/plain"].as_str().unwrap_or_else(|| panic!("no text part in {message:#}")).to_string()
}

async fn person_gets_smime_certificate_over_real_smtp(db: Db) {
    let Some(python) = aiosmtpd_python() else { return };
    let smtp_port = free_loopback_port();
    let Some(server) = TestServer::start_with(db, |s| s.mail.smtp_url = format!("smtp://127.0.0.1:{smtp_port}")).await
    else {
        return;
    };
    let smtp = SmtpServer::start(&python, smtp_port, server.dir.path()).await;
    let email = "ann@example.test";

    // The directory says EAB is required; the invite arrives over SMTP.
    let directory: Value =
        server.http().get(server.directory(Track::Human)).send().await.unwrap().json().await.unwrap();
    assert_eq!(directory["meta"]["externalAccountRequired"], true);
    let token = server.admin_token(dualca_admin::Role::Helpdesk);
    let joiner =
        json!({"email": email, "display_name": "Ann", "employee_id": "E-1", "manager_email": "boss@example.test"});
    assert_eq!(server.admin_call("POST", "/admin/api/human/people", &token, joiner).await.0, 201);
    let invite = text_part(&received(&smtp, email, "enrol").await);
    let (link, code) = crate::common::mail::link_and_code(&invite);
    let eab = complete_enrollment(&server, &link, &code).await;
    let client = human_account(&server, eab).await;

    // The challenge mail, as the person's mailbox receives it.
    let order = order_email(&client, email, "smime").await;
    assert_eq!(order.from, "dualca@localhost");
    let mail = received(&smtp, email, "ACME: ").await;
    let headers = &mail["headers"];
    assert_eq!(headers["auto-submitted"], "auto-generated; type=acme");
    assert!(headers["from"].as_str().unwrap().contains(&order.from), "{headers}");
    let part1 = headers["subject"].as_str().unwrap().strip_prefix("ACME: ").unwrap().to_string();
    let message_id = headers["message-id"].as_str().unwrap().to_string();
    assert!(part1.len() >= 22, "token-part1 carries at least 128 bits");
    assert_ne!(part1, order.token);

    // The reply, through the trusted relay (the test), to the intake.
    let response = response_for(&part1, &order, &client);
    let reply = reply_mail(&[dkim_pass("example.test")], email, &order.from, &part1, &message_id, &response);
    let (code, text) = smtp_send(server.intake_addr(), email, &order.from, &reply).await;
    assert_eq!(code, 250, "{text}");
    let res = client.post(&order.challenge_url, Some(&json!({}))).await;
    assert_eq!(res.status, 200, "{}", res.text);
    let state = order_after_reply(&client, &order.order_url).await;
    assert_eq!(state["status"], "ready", "{state}");
    let challenge = client.post(&order.challenge_url, None).await.json();
    assert_eq!(challenge["status"], "valid");

    let (chain, _key) = finalize_email(&client, &order, email).await;
    let cert = first_cert(&chain);
    let der = cert.to_der().unwrap();
    let (_, parsed) = x509_parser::parse_x509_certificate(&der).unwrap();
    let san = parsed.subject_alternative_name().unwrap().unwrap();
    let names: Vec<String> = san.value.general_names.iter().map(|n| n.to_string()).collect();
    assert_eq!(names, vec![format!("RFC822Name({email})")]);
    let eku = parsed.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.email_protection && !eku.client_auth && !eku.server_auth, "{eku:?}");
    let ku = parsed.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && ku.key_encipherment(), "{ku:?}");
    let validity = parsed.validity();
    assert_eq!(validity.not_after.timestamp() - validity.not_before.timestamp(), 365 * 86400);
    // The person hears of it, over SMTP too.
    received(&smtp, email, "a certificate was issued for you").await;
    let auditor = server.admin_token(dualca_admin::Role::Auditor);
    let (_, audit) =
        server.admin_call("GET", "/admin/api/human/audit?action=challenge.reply-received", &auditor, json!(null)).await;
    assert_eq!(audit["events"][0]["details"]["authentication"], "dkim:example.test@mx.example.test");
    smtp.stop().await;
    server.stop().await;
}
on_both_databases!(person_gets_smime_certificate_over_real_smtp);

/// Sends `mail` to the intake and asserts the SMTP answer's code and that its text contains
/// `needle`.
async fn expect_smtp(server: &TestServer, rcpt: &str, mail: &str, code: u16, needle: &str) {
    let (got, text) = smtp_send(server.intake_addr(), "ann@example.test", rcpt, mail).await;
    assert_eq!(got, code, "{text}");
    assert!(text.contains(needle), "{needle:?} not in {text:?}");
}

async fn challenge_state(client: &RawClient, order: &EmailOrder) -> Value {
    client.post(&order.challenge_url, None).await.json()
}

async fn bad_replies_are_refused_with_the_exact_problem(db: Db) {
    let Some(server) = TestServer::start(db).await else { return };
    let email = "ann@example.test";
    let eab = enrolled_person(&server, email, "E-1", false).await;
    let client = human_account(&server, eab).await;

    // Someone else's address is refused at newOrder; so is a host name.
    for (kind, value, problem) in [
        ("email", "bo@example.test", "rejectedIdentifier"),
        ("email", "ANN@other.test", "rejectedIdentifier"),
        ("dns", "ann.example.test", "unsupportedIdentifier"),
    ] {
        let payload = json!({"identifiers": [{"type": kind, "value": value}], "profile": "smime"});
        client.post(&client.url("new-order"), Some(&payload)).await.assert_problem(problem, 400);
    }

    let order = order_email(&client, email, "smime").await;
    let (part1, message_id) = challenge_mail(&server, email).await;
    let good = response_for(&part1, &order, &client);
    let to = order.from.clone();
    let dkim = [dkim_pass("example.test")];

    // Replies that match no challenge or go to the wrong mailbox change nothing.
    let unknown = reply_mail(&dkim, email, &to, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &message_id, &good);
    expect_smtp(&server, &to, &unknown, 550, "no ACME challenge mail had this subject").await;
    let not_acme =
        reply_mail(&dkim, email, &to, "x", &message_id, &good).replace("Subject: Re: ACME: x", "Subject: hello");
    expect_smtp(&server, &to, &not_acme, 550, "this mailbox takes only ACME replies").await;
    expect_smtp(&server, "postmaster@localhost", &unknown, 550, "5.1.1").await;
    assert_eq!(challenge_state(&client, &order).await["status"], "pending");

    // Replies that match but must not count, each with its reason.
    let cases: Vec<(String, &str)> = vec![
        (reply_mail(&[], email, &to, &part1, &message_id, &good), "unauthorized: the reply is not authenticated"),
        (
            reply_mail(
                &["Authentication-Results: evil.example; dkim=pass header.d=example.test".to_string()],
                email,
                &to,
                &part1,
                &message_id,
                &good,
            ),
            "no Authentication-Results header from a trusted relay",
        ),
        (
            reply_mail(
                &[format!("Authentication-Results: {TRUSTED_RELAY}; dkim=fail header.d=example.test")],
                email,
                &to,
                &part1,
                &message_id,
                &good,
            ),
            "the trusted relay recorded no DKIM pass",
        ),
        (reply_mail(&[dkim_pass("elsewhere.test")], email, &to, &part1, &message_id, &good), "not the From domain"),
        (
            reply_mail(&[dkim_pass("example.test")], "bo@example.test", &to, &part1, &message_id, &good),
            "unauthorized: the reply comes from bo@example.test; the challenge was sent to ann@example.test",
        ),
        (
            reply_mail(&dkim, email, &to, &part1, "<someone-else@localhost>", &good),
            "incorrectResponse: the reply's In-Reply-To does not name the challenge mail",
        ),
        (
            reply_mail(&dkim, email, &to, &part1, &message_id, "wrongwrongwrongwrongwrongwrongwrongwrongwro"),
            "incorrectResponse: the ACME RESPONSE does not match",
        ),
    ];
    for (mail, needle) in &cases {
        expect_smtp(&server, &to, mail, 550, needle).await;
    }
    // None of them settled the challenge; a correct reply still wins (nothing was lost).
    assert_eq!(challenge_state(&client, &order).await["status"], "pending");
    let reply = reply_mail(&dkim, email, &to, &part1, &message_id, &good);
    expect_smtp(&server, &to, &reply, 250, "reply accepted").await;
    // A wrong reply after the right one cannot undo it.
    expect_smtp(&server, &to, &cases[6].0, 550, "incorrectResponse").await;
    client.post(&order.challenge_url, Some(&json!({}))).await;
    assert_eq!(order_after_reply(&client, &order.order_url).await["status"], "ready");
    // Once settled, further replies answer no open challenge.
    expect_smtp(&server, &to, &reply, 550, "the challenge is already valid").await;

    // A challenge the client already triggered is decided by the first reply that matches it.
    drain_outbox(&server).await;
    let known = challenge_mails(&server, email);
    let order = order_email(&client, email, "smime").await;
    let res = client.post(&order.challenge_url, Some(&json!({}))).await;
    assert_eq!(res.json()["status"], "processing");
    let (part1, message_id) = new_challenge_mail(&server, email, &known).await;
    let wrong = reply_mail(&dkim, email, &to, &part1, &message_id, "wrongwrongwrongwrongwrongwrongwrongwrongwro");
    expect_smtp(&server, &to, &wrong, 550, "incorrectResponse").await;
    let state = order_after_reply(&client, &order.order_url).await;
    assert_eq!(state["status"], "invalid");
    assert_eq!(state["error"]["type"], "urn:ietf:params:acme:error:incorrectResponse", "{state}");
    let challenge = challenge_state(&client, &order).await;
    assert_eq!(challenge["status"], "invalid");
    assert_eq!(challenge["error"]["type"], "urn:ietf:params:acme:error:incorrectResponse");

    // The refusals are on the human audit chain.
    let auditor = server.admin_token(dualca_admin::Role::Auditor);
    let (_, audit) = server
        .admin_call("GET", "/admin/api/human/audit?action=challenge.reply-received&limit=100", &auditor, json!(null))
        .await;
    let errors: Vec<&str> =
        audit["events"].as_array().unwrap().iter().filter_map(|e| e["details"]["error"].as_str()).collect();
    assert!(errors.contains(&"unauthorized") && errors.contains(&"incorrectResponse"), "{errors:?}");
    server.stop().await;
}
on_both_databases!(bad_replies_are_refused_with_the_exact_problem);

/// A correct reply arriving while the client asks for validation settles the challenge, in
/// whichever order the two land. On PostgreSQL the reply could read the challenge pending while
/// the request moved it to processing and looked for a reply: the reply was then stored for
/// later, no later came, and the challenge stayed processing.
async fn a_reply_racing_the_request_for_validation_settles_the_challenge(db: Db) {
    let Some(server) = TestServer::start(db).await else { return };
    let email = "ann@example.test";
    let eab = enrolled_person(&server, email, "E-1", false).await;
    let client = human_account(&server, eab).await;
    let dkim = [dkim_pass("example.test")];
    for round in 0..6u64 {
        drain_outbox(&server).await;
        let known = challenge_mails(&server, email);
        let order = order_email(&client, email, "smime").await;
        let (part1, message_id) = new_challenge_mail(&server, email, &known).await;
        let reply = reply_mail(&dkim, email, &order.from, &part1, &message_id, &response_for(&part1, &order, &client));
        let request = async {
            // The two are staggered differently each round, to land in different orders.
            tokio::time::sleep(std::time::Duration::from_millis(round * 2)).await;
            client.post(&order.challenge_url, Some(&json!({}))).await
        };
        let ((code, text), res) = tokio::join!(smtp_send(server.intake_addr(), email, &order.from, &reply), request);
        assert_eq!(code, 250, "round {round}: {text}");
        assert_eq!(res.status, 200, "round {round}: {}", res.text);
        let state = order_after_reply(&client, &order.order_url).await;
        assert_eq!(state["status"], "ready", "round {round}: {state}");
        assert_eq!(challenge_state(&client, &order).await["status"], "valid", "round {round}");
    }
    server.stop().await;
}
on_both_databases!(a_reply_racing_the_request_for_validation_settles_the_challenge);

async fn credentials_stay_on_their_track(db: Db) {
    let Some(server) = TestServer::start(db).await else { return };
    // A machine asset's EAB key binds nothing on the human directory, and the reverse.
    let machine_eab = server.eab();
    let mut on_human = RawClient::bare(&server, Track::Human);
    on_human.eab = Some(machine_eab);
    let url = on_human.url("new-account");
    let payload = json!({"termsOfServiceAgreed": true, "externalAccountBinding":
        crate::common::jws::eab_binding(&on_human.eab.as_ref().unwrap().0, &on_human.eab.as_ref().unwrap().1, &crate::common::jws::jwk_of(&on_human.key), &url)});
    let body = on_human.post(&url, Some(&payload)).await.assert_problem("unauthorized", 403);
    assert!(body["detail"].as_str().unwrap().contains("the other track"), "{body}");

    let human_eab = enrolled_person(&server, "ann@example.test", "E-1", false).await;
    let mut on_machine = RawClient::bare(&server, Track::Machine);
    let url = on_machine.url("new-account");
    let payload = json!({"termsOfServiceAgreed": true, "externalAccountBinding":
        crate::common::jws::eab_binding(&human_eab.0, &human_eab.1, &crate::common::jws::jwk_of(&on_machine.key), &url)});
    let body = on_machine.post(&url, Some(&payload)).await.assert_problem("unauthorized", 403);
    assert!(body["detail"].as_str().unwrap().contains("the other track"), "{body}");
    // Without EAB the human directory takes no account at all.
    let mut bare = RawClient::bare(&server, Track::Human);
    let url = bare.url("new-account");
    bare.post(&url, Some(&json!({"termsOfServiceAgreed": true}))).await.assert_problem("externalAccountRequired", 401);
    // A machine account's kid is unknown to the human directory.
    let machine = {
        let mut c = RawClient::new(&server, Track::Machine);
        c.create_account().await;
        c
    };
    on_machine.kid = machine.kid.clone();
    on_machine.key = machine.key;
    on_machine.base = bare.base.clone();
    let payload = json!({"identifiers": [{"type": "email", "value": "ann@example.test"}]});
    on_machine.post(&bare.url("new-order"), Some(&payload)).await.assert_problem("accountDoesNotExist", 400);
    bare.kid = None;
    server.stop().await;
}
on_both_databases!(credentials_stay_on_their_track);

/// A person who holds an S/MIME certificate from this CA renews by signing the reply with it:
/// no DKIM needed. Signatures by someone else's certificate, over altered content, or by a
/// revoked certificate do not count.
async fn smime_signed_replies(db: Db) {
    let Some(server) = TestServer::start(db).await else { return };
    let (ann, bo) = ("ann@example.test", "bo@example.test");
    let ann_client = human_account(&server, enrolled_person(&server, ann, "E-1", false).await).await;
    let bo_client = human_account(&server, enrolled_person(&server, bo, "E-2", false).await).await;
    let (ann_chain, ann_key, ann_serial) = issue_person_certificate(&server, &ann_client, ann, "smime").await;
    let (bo_chain, bo_key, _) = issue_person_certificate(&server, &bo_client, bo, "smime").await;
    let (ann_cert, bo_cert) = (first_cert(&ann_chain), first_cert(&bo_chain));

    drain_outbox(&server).await;
    let known = challenge_mails(&server, ann);
    let order = order_email(&ann_client, ann, "smime").await;
    let (part1, message_id) = new_challenge_mail(&server, ann, &known).await;
    let response = response_for(&part1, &order, &ann_client);
    let to = order.from.clone();
    // Signed by Bo's certificate, From Ann.
    let wrong_signer = smime_signed_reply(&bo_cert, &bo_key, ann, &to, &part1, &message_id, &response);
    expect_smtp(&server, &to, &wrong_signer, 550, &format!("is by a certificate for [{bo}], not for {ann}")).await;
    // Altered after signing: the response inside is no longer what was signed.
    let signed = smime_signed_reply(&ann_cert, &ann_key, ann, &to, &part1, &message_id, &response);
    let tampered = signed.replacen(&response, &response.chars().rev().collect::<String>(), 1);
    expect_smtp(&server, &to, &tampered, 550, "the S/MIME signature does not verify").await;
    // Signed by Ann's own, valid certificate: accepted without any Authentication-Results.
    expect_smtp(&server, &to, &signed, 250, "reply accepted").await;
    ann_client.post(&order.challenge_url, Some(&json!({}))).await;
    assert_eq!(order_after_reply(&ann_client, &order.order_url).await["status"], "ready");
    let auditor = server.admin_token(dualca_admin::Role::Auditor);
    let (_, audit) =
        server.admin_call("GET", "/admin/api/human/audit?action=challenge.reply-received", &auditor, json!(null)).await;
    let newest = audit["events"].as_array().unwrap().last().unwrap();
    assert_eq!(newest["details"]["authentication"], "smime", "{audit}");

    // Once Ann's certificate is revoked, it proves nothing.
    server
        .ca
        .revoke_by_operator(Some(Track::Human), &ann_serial, dualca_ca::model::RevocationReason::KeyCompromise, "test")
        .unwrap();
    // She is told.
    let notice = crate::common::mail::mail_to(&server, ann, "your certificate was revoked").await;
    assert!(notice.contains(&ann_serial) && notice.contains("keyCompromise"), "{notice}");
    drain_outbox(&server).await;
    let known = challenge_mails(&server, ann);
    let order = order_email(&ann_client, ann, "smime").await;
    let (part1, message_id) = new_challenge_mail(&server, ann, &known).await;
    let response = response_for(&part1, &order, &ann_client);
    let signed = smime_signed_reply(&ann_cert, &ann_key, ann, &to, &part1, &message_id, &response);
    expect_smtp(&server, &to, &signed, 550, &format!("certificate {ann_serial} is revoked")).await;
    server.stop().await;
}
on_both_databases!(smime_signed_replies);

/// The development setting counts unauthenticated replies, and the server says so loudly when
/// it starts: the real binary is run for the banner.
async fn accept_unauthenticated_is_loud_and_does_what_it_says(db: Db) {
    let Some(server) = TestServer::start_with(db, |s| s.email_reply.accept_unauthenticated = true).await else {
        return;
    };
    let email = "ann@example.test";
    let client = human_account(&server, enrolled_person(&server, email, "E-1", false).await).await;
    let order = order_email(&client, email, "smime").await;
    let (part1, message_id) = challenge_mail(&server, email).await;
    let response = response_for(&part1, &order, &client);
    let bare = reply_mail(&[], email, &order.from, &part1, &message_id, &response);
    expect_smtp(&server, &order.from, &bare, 250, "reply accepted").await;
    server.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_dualca"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("DUALCA_EMAIL_REPLY__LISTEN", "127.0.0.1:0")
        .env("DUALCA_EMAIL_REPLY__ACCEPT_UNAUTHENTICATED", "true")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let found = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        use tokio::io::AsyncBufReadExt;
        let mut line = String::new();
        while stderr.read_line(&mut line).await.unwrap() > 0 {
            seen.push_str(&line);
            if line.starts_with("WARNING: [email_reply] accept_unauthenticated = true") {
                return true;
            }
            line.clear();
        }
        false
    })
    .await;
    let _ = child.kill().await;
    assert_eq!(found, Ok(true), "no loud warning at start-up; stderr was:\n{seen}");
    assert!(seen.contains("Anyone who can send mail with a forged From"), "{seen}");
}
on_both_databases!(accept_unauthenticated_is_loud_and_does_what_it_says);
