//! The human track's people: a joiner's invite and enrollment, help-desk proofing, issuance
//! bound to the person, a mover, and a leaver whose certificates are revoked and whose manager
//! is told.

use std::time::Duration;

use dualca_admin::Role;
use dualca_ca::Track;
use serde_json::{json, Value};

use crate::common::human::{enrolled_person, human_account, issue_person_certificate};
use crate::common::jws::{eab_binding, jwk_of, RawClient};
use crate::common::mail::{decode_quoted_printable, invite, mail_to};
use crate::common::{Db, TestServer};
use crate::on_both_databases;

fn token(server: &TestServer, role: Role) -> String {
    server.admin_token(role)
}

async fn call(server: &TestServer, method: &str, path: &str, token: &str, body: Value) -> (u16, Value) {
    server.admin_call(method, path, token, body).await
}

async fn joiner_enrolls_is_proofed_and_leaves(db: Db) {
    let Some(server) = TestServer::start(db).await else { return };
    let helpdesk = token(&server, Role::Helpdesk);
    let (status, body) = call(&server, "POST", "/admin/api/human/people", &helpdesk, json!({
        "email": "ann@example.test", "display_name": "Ann Example", "employee_id": "E-1001", "manager_email": "boss@example.test"
    }))
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!((body["status"].clone(), body["proofing_level"].clone()), (json!("invited"), json!("none")));
    // Inventory may not touch people; a duplicate joiner is a conflict.
    assert_eq!(
        call(&server, "GET", "/admin/api/human/people", &token(&server, Role::Inventory), json!(null)).await.0,
        403
    );
    let (status, _) = call(&server, "POST", "/admin/api/human/people", &helpdesk, json!({
        "email": "ann@example.test", "display_name": "Ann Again", "employee_id": "E-1002", "manager_email": "boss@example.test"
    }))
    .await;
    assert_eq!(status, 409);

    // The invite carries a one-time link and code.
    let (link, code) = invite(&server, "ann@example.test").await;
    let http = server.http();
    assert_eq!(http.get(&link).send().await.unwrap().status(), 200);
    let wrong = http.post(&link).form(&[("code", "00000000")]).send().await.unwrap();
    assert_eq!(wrong.status(), 403);
    let page = http.post(&link).form(&[("code", code.as_str())]).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let field =
        |id: &str| html.split(&format!("<code id={id}>")).nth(1).unwrap().split('<').next().unwrap().to_string();
    let (kid, hmac) = (field("kid"), field("hmac"));
    assert_eq!(
        http.post(&link).form(&[("code", code.as_str())]).send().await.unwrap().status(),
        403,
        "the link works once"
    );
    let person = server.ca.person("ann@example.test").unwrap();
    assert_eq!((person.status.as_str(), person.proofing_level.as_str()), ("active", "email"));
    // The machine track's inventory role cannot revoke a person's credentials.
    let inventory = token(&server, Role::Inventory);
    assert_eq!(
        call(&server, "POST", &format!("/admin/api/machine/eab/{kid}/revoke"), &inventory, json!({})).await.0,
        404
    );
    mail_to(&server, "ann@example.test", "enrollment completed").await;

    // Her account is bound to her; client-auth needs a help-desk check first.
    let key = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &hmac).unwrap();
    let account = human_account(&server, (kid.clone(), key.clone())).await;
    let client_auth =
        json!({"identifiers": [{"type": "email", "value": "ann@example.test"}], "profile": "client-auth"});
    let new_order = account.url("new-order");
    account.post(&new_order, Some(&client_auth)).await.assert_problem("userActionRequired", 403);
    let (status, body) = call(
        &server,
        "POST",
        "/admin/api/human/people/ann@example.test/proof",
        &helpdesk,
        json!({"method": "video", "evidence": "passport shown on video call, matched HR photo"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["proofing_level"], "helpdesk");
    let (status, _) = call(
        &server,
        "POST",
        "/admin/api/human/people/ann@example.test/proof",
        &helpdesk,
        json!({"method": "telepathy", "evidence": "trust me"}),
    )
    .await;
    assert_eq!(status, 400);
    let (_, _, serial) = issue_person_certificate(&server, &account, "ann@example.test", "client-auth").await;
    let filter = dualca_ca::CertificateFilter { person: Some(person.id.clone()), ..Default::default() };
    let hers = server.ca.search_certificates(Track::Human, &filter, None, 10).unwrap();
    assert_eq!(hers.iter().map(|c| c.serial.clone()).collect::<Vec<_>>(), vec![serial.clone()]);

    // A mover changes manager, audited.
    let (status, _) = call(
        &server,
        "PUT",
        "/admin/api/human/people/ann@example.test",
        &helpdesk,
        json!({"manager_email": "newboss@example.test"}),
    )
    .await;
    assert_eq!(status, 200);
    let auditor = token(&server, Role::Auditor);
    let (_, audit) = call(&server, "GET", "/admin/api/human/audit?action=person.moved", &auditor, json!(null)).await;
    assert_eq!(audit["events"][0]["details"]["to"]["manager"], "newboss@example.test");

    // A leaver: certificates revoked (affiliationChanged), account dead, manager told.
    let (status, body) =
        call(&server, "POST", "/admin/api/human/people/ann@example.test/leaver", &helpdesk, json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revoked_certificates"], json!([serial.clone()]));
    let record = server.ca.certificate(Track::Human, &serial).unwrap();
    assert_eq!((record.status.as_str(), record.revocation_reason), ("revoked", Some(3)));
    mail_to(&server, "newboss@example.test", "has left").await;
    mail_to(&server, "ann@example.test", "were revoked").await;
    account.post(&new_order, Some(&client_auth)).await.assert_problem("unauthorized", 403);
    let fresh = crate::common::jws::RawClient::bare(&server, Track::Human);
    let url = fresh.url("new-account");
    let binding = crate::common::jws::eab_binding(&kid, &key, &crate::common::jws::jwk_of(&fresh.key), &url);
    let again = fresh.post(&url, Some(&json!({"termsOfServiceAgreed": true, "externalAccountBinding": binding}))).await;
    again.assert_problem("unauthorized", 403);
    let (_, audit) =
        call(&server, "GET", "/admin/api/human/audit?subject=person:ann@example.test", &auditor, json!(null)).await;
    let actions: Vec<&str> =
        audit["events"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    for expected in ["person.joined", "person.proofed", "person.moved", "person.left"] {
        assert!(actions.contains(&expected), "{expected} in {actions:?}");
    }
    // The machine track's chain saw none of it.
    let (_, machine) =
        call(&server, "GET", "/admin/api/machine/audit?subject=person:ann@example.test", &auditor, json!(null)).await;
    assert_eq!(machine["events"], json!([]));
    server.stop().await;
}
on_both_databases!(joiner_enrolls_is_proofed_and_leaves);

/// How many delivered mails (.eml files) carry `subject`, once the outbox has drained.
async fn reminders_in_outbox(server: &TestServer, subject: &str) -> usize {
    for _ in 0..100 {
        if server.ca.undelivered_mail(1000).unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::fs::read_dir(server.settings.data_dir.join("outbox"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| decode_quoted_printable(&std::fs::read_to_string(e.path()).unwrap_or_default()).contains(subject))
        .count()
}

async fn issuance_mail_and_expiry_reminders_once_across_restarts(db: Db) {
    let Some(server) = TestServer::start(db).await else { return };
    let eab = enrolled_person(&server, "bo@example.test", "E-2001", true).await;
    let account = human_account(&server, eab).await;
    issue_person_certificate(&server, &account, "bo@example.test", "client-auth").await;
    mail_to(&server, "bo@example.test", "a certificate was issued for you").await;

    // 90-day client-auth certificate: 61 days on, the 30-day reminder goes out once.
    server.ca.clock.advance(time::Duration::days(61));
    assert_eq!(server.ca.send_expiry_reminders().unwrap(), 1);
    assert_eq!(server.ca.send_expiry_reminders().unwrap(), 0);
    // Across a restart (a fresh process, its own clock), still once.
    let (settings, dir, responder) = (server.settings.clone(), server.dir.clone(), server.responder.clone());
    server.stop().await;
    let server = TestServer::boot(settings, dir, responder).await;
    server.ca.clock.advance(time::Duration::days(61));
    assert_eq!(server.ca.send_expiry_reminders().unwrap(), 0, "the 30-day reminder is not sent twice");
    server.ca.clock.advance(time::Duration::days(23));
    assert_eq!(server.ca.send_expiry_reminders().unwrap(), 1, "the 7-day reminder");
    server.ca.clock.advance(time::Duration::hours(5 * 24 + 12));
    assert_eq!(server.ca.send_expiry_reminders().unwrap(), 1, "the 1-day reminder");
    assert_eq!(server.ca.send_expiry_reminders().unwrap(), 0);
    for subject in ["certificate expires in 30 days", "certificate expires in 7 days", "certificate expires in 1 day"] {
        assert_eq!(reminders_in_outbox(&server, subject).await, 1, "{subject}");
    }
    server.stop().await;
}
on_both_databases!(issuance_mail_and_expiry_reminders_once_across_restarts);

/// An enrollment link works once, also when its code is posted several times at once (a
/// double-click, or someone who has the link and the code racing its owner): one post gets EAB
/// credentials, the others are refused, and the person holds one key. On PostgreSQL the posts'
/// transactions run side by side.
async fn an_enrollment_link_completes_once_under_concurrent_posts(db: Db) {
    let Some(server) = TestServer::start(db).await else { return };
    let token = server.admin_token(Role::Helpdesk);
    let joiner = json!({"email": "racer@example.test", "display_name": "Ra", "employee_id": "E-RACE",
        "manager_email": "boss@example.test"});
    let (status, body) = server.admin_call("POST", "/admin/api/human/people", &token, joiner).await;
    assert_eq!(status, 201, "{body}");
    let (link, code) = invite(&server, "racer@example.test").await;
    let mut posts = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let (http, link, code) = (server.http(), link.clone(), code.clone());
        posts.spawn(async move {
            let page = http.post(&link).form(&[("code", code.as_str())]).send().await.unwrap();
            (page.status().as_u16(), page.text().await.unwrap())
        });
    }
    let mut statuses = Vec::new();
    while let Some(joined) = posts.join_next().await {
        let (status, html) = joined.unwrap();
        assert!(status == 200 || status == 403, "HTTP {status}: {html}");
        assert_eq!(status == 200, html.contains("<code id=kid>"), "credentials only on success: {html}");
        statuses.push(status);
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 403, 403, 403, 403, 403]);
    // One enrollment event in the person's proofing history.
    let (status, person) =
        server.admin_call("GET", "/admin/api/human/people/racer@example.test", &token, Value::Null).await;
    assert_eq!(status, 200, "{person}");
    let links = person["proofing"].as_array().unwrap().iter().filter(|e| e["method"] == "email-link").count();
    assert_eq!(links, 1, "{person}");

    // Five wrong codes close a link, also when they come at once: then the right code is
    // refused too.
    let joiner = json!({"email": "guessed@example.test", "display_name": "Gu", "employee_id": "E-GUESS",
        "manager_email": "boss@example.test"});
    let (status, body) = server.admin_call("POST", "/admin/api/human/people", &token, joiner).await;
    assert_eq!(status, 201, "{body}");
    let (link, code) = invite(&server, "guessed@example.test").await;
    let wrong = if code == "00000000" { "11111111" } else { "00000000" };
    let mut guesses = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let (http, link) = (server.http(), link.clone());
        guesses.spawn(async move { http.post(&link).form(&[("code", wrong)]).send().await.unwrap().status().as_u16() });
    }
    while let Some(status) = guesses.join_next().await {
        assert_eq!(status.unwrap(), 403);
    }
    let right = server.http().post(&link).form(&[("code", code.as_str())]).send().await.unwrap();
    assert_eq!(right.status(), 403, "the link is closed after five wrong codes");
    server.stop().await;
}
on_both_databases!(an_enrollment_link_completes_once_under_concurrent_posts);

/// Joiners posted at once with one address, or with one employee id: one is registered, the
/// others are conflicts, never server errors. On PostgreSQL each can find the address free
/// before any commits; the later INSERTs then meet the first's row in the unique index.
async fn joiners_racing_for_one_address_or_employee_id(db: Db) {
    let Some(server) = TestServer::start(db).await else { return };
    let helpdesk = token(&server, Role::Helpdesk);
    for (round, same_email) in [true, false, true, false].into_iter().enumerate() {
        let mut posts = tokio::task::JoinSet::new();
        for racer in 0..6 {
            let (email, employee_id) = if same_email {
                (format!("twin-{round}@example.test"), format!("E-TWIN-{round}-{racer}"))
            } else {
                (format!("twin-{round}-{racer}@example.test"), format!("E-TWIN-{round}"))
            };
            let joiner = json!({"email": email, "display_name": "Tw", "employee_id": employee_id,
                "manager_email": "boss@example.test"});
            posts.spawn(server.admin_request("POST", "/admin/api/human/people", &helpdesk, joiner));
        }
        let mut statuses = Vec::new();
        for (status, body) in posts.join_all().await {
            assert!(status == 201 || status == 409, "round {round}: HTTP {status}: {body}");
            statuses.push(status);
        }
        statuses.sort_unstable();
        assert_eq!(statuses, [201, 409, 409, 409, 409, 409], "round {round}");
    }
    let (_, people) = call(&server, "GET", "/admin/api/human/people", &helpdesk, Value::Null).await;
    let twins = people["people"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["email"].as_str().unwrap().starts_with("twin-"))
        .count();
    assert_eq!(twins, 4, "one person per round: {people}");
    server.stop().await;
}
on_both_databases!(joiners_racing_for_one_address_or_employee_id);

/// A leave while the leaver's tooling makes accounts with their EAB key: each account is
/// refused, or made and then deactivated by the leave; none outlives it, and nothing fails.
/// On PostgreSQL the account's transaction used to take the key's row and then the audit
/// chain's lock, and the leave the other way round: the two could deadlock, and an account
/// committed between the leave's deactivations and its commit stayed valid.
async fn a_leave_leaves_no_account_made_meanwhile(db: Db) {
    let Some(server) = TestServer::start(db).await else { return };
    let helpdesk = token(&server, Role::Helpdesk);
    let (mut made, mut refused) = (0, 0);
    for round in 0..4 {
        let email = format!("leaving-{round}@example.test");
        let (kid, key) = enrolled_person(&server, &email, &format!("E-LEAVE-{round}"), false).await;
        let mut racers = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let client = RawClient::bare(&server, Track::Human);
            let binding_for = (kid.clone(), key.clone());
            racers.spawn(async move {
                let url = client.url("new-account");
                let binding = eab_binding(&binding_for.0, &binding_for.1, &jwk_of(&client.key), &url);
                let payload = json!({"termsOfServiceAgreed": true, "externalAccountBinding": binding});
                let res = client.post(&url, Some(&payload)).await;
                (client, res)
            });
        }
        let leave = format!("/admin/api/human/people/{email}/leaver");
        let (status, body) = call(&server, "POST", &leave, &helpdesk, json!({})).await;
        assert_eq!(status, 200, "round {round}: {body}");
        for (mut client, res) in racers.join_all().await {
            if res.status == 201 {
                made += 1;
                client.kid = res.header("location");
                let account_url = client.kid.clone().unwrap();
                // Deactivated by the leave: its requests are refused.
                client.post(&account_url, None).await.assert_problem("unauthorized", 403);
            } else {
                refused += 1;
                res.assert_problem("unauthorized", 403);
            }
        }
    }
    assert_eq!(made + refused, 16);
    server.stop().await;
}
on_both_databases!(a_leave_leaves_no_account_made_meanwhile);

/// With `[admin] listen` set, the invite's link (`<public_url>/enroll/<token>`) still works: the
/// enrollment page is public and served on the main listener, though the admin API that sent
/// the invite answers only on the admin one.
async fn enrollment_works_on_the_main_listener_when_admin_has_its_own(db: Db) {
    let Some(server) = TestServer::start_with(db, |s| s.admin.listen = "127.0.0.1:0".into()).await else { return };
    assert_ne!(server.admin_url, server.public_url);
    let helpdesk = token(&server, Role::Helpdesk);
    let (status, body) = call(&server, "POST", "/admin/api/human/people", &helpdesk, json!({
        "email": "lia@example.test", "display_name": "Lia Example", "employee_id": "E-3001", "manager_email": "boss@example.test"
    }))
    .await;
    assert_eq!(status, 201, "{body}");
    let (link, code) = invite(&server, "lia@example.test").await;
    assert!(link.starts_with(&format!("{}/enroll/", server.public_url)), "{link}");
    let http = server.http();
    assert_eq!(http.get(&link).send().await.unwrap().status(), 200);
    let page = http.post(&link).form(&[("code", code.as_str())]).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("<code id=kid>"));
    assert_eq!(server.ca.person("lia@example.test").unwrap().status.as_str(), "active");
    // The admin listener serves the public routes too, this page among them.
    let on_admin = link.replacen(&server.public_url, &server.admin_url, 1);
    assert_eq!(http.get(&on_admin).send().await.unwrap().status(), 200);
    server.stop().await;
}
on_both_databases!(enrollment_works_on_the_main_listener_when_admin_has_its_own);
