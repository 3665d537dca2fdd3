//! Help-desk recovery of a person who lost a key or a device: the old certificate is revoked
//! with the reason chosen (seen by OCSP), the old account and EAB credentials are dead, the
//! mailed link and code enroll again and the new credentials order; the two-person rule holds
//! for a client-auth holder, through the API and the CLI; bad input and wrong states are
//! refused precisely; and every step is on the human chain with the operators' ids.

use dualca_admin::Role;
use dualca_ca::model::RecoveryStatus;
use dualca_ca::Track;
use serde_json::{json, Value};

use crate::common::human;
use crate::common::jws::{eab_binding, jwk_of, RawClient};
use crate::common::mail::{invite, mail_to, recovery_link};
use crate::common::{Db, TestServer};
use crate::on_both_databases;

/// A helpdesk token for one named operator (the two-person rule compares these names).
fn operator(server: &TestServer, subject: &str) -> String {
    server.settings.admin_auth().unwrap().mint(Role::Helpdesk, subject, 3600, server.ca.clock.unix()).unwrap().0
}

async fn call(server: &TestServer, method: &str, path: &str, token: &str, body: Value) -> (u16, Value) {
    server.admin_call(method, path, token, body).await
}

/// A joiner who enrolled through the invite (proofing level email); their EAB credentials.
async fn enrolled_person(server: &TestServer, email: &str, employee_id: &str) -> (String, Vec<u8>) {
    let hr = operator(server, "hr-feed");
    let joiner = json!({"email": email, "display_name": "Dee Example", "employee_id": employee_id,
        "manager_email": "boss@example.test"});
    assert_eq!(call(server, "POST", "/admin/api/human/people", &hr, joiner).await.0, 201);
    let (link, code) = invite(server, email).await;
    human::complete_enrollment(server, &link, &code).await
}

async fn proof_by_helpdesk(server: &TestServer, email: &str) {
    let proof = json!({"method": "in-person", "evidence": "badge and passport at the desk"});
    let (status, body) =
        call(server, "POST", &format!("/admin/api/human/people/{email}/proof"), &operator(server, "proofer"), proof)
            .await;
    assert_eq!(status, 200, "{body}");
}

/// A human-track account bound to the person by their EAB credentials.
/// The account, or the problem document that refused it.
async fn person_account(server: &TestServer, eab: &(String, Vec<u8>)) -> Result<RawClient, Value> {
    let mut client = RawClient::bare(server, Track::Human);
    let url = client.url("new-account");
    let binding = eab_binding(&eab.0, &eab.1, &jwk_of(&client.key), &url);
    let res = client.post(&url, Some(&json!({"termsOfServiceAgreed": true, "externalAccountBinding": binding}))).await;
    if res.status != 201 {
        return Err(res.json());
    }
    client.kid = res.header("location");
    Ok(client)
}

struct PersonCertificate {
    serial: String,
    chain_pem: String,
}

/// The one place these tests get a person a certificate: an order for their address, proven
/// by a DKIM-authenticated reply to the challenge mail.
async fn issue_person_certificate(
    server: &TestServer,
    account: &RawClient,
    email: &str,
    profile: &str,
) -> PersonCertificate {
    let (chain_pem, _key, serial) = human::issue_person_certificate(server, account, email, profile).await;
    PersonCertificate { serial, chain_pem }
}

/// What the human OCSP responder says of a certificate: its status and, when revoked, the
/// reason.
async fn ocsp(server: &TestServer, cert: &PersonCertificate) -> (openssl::ocsp::OcspCertStatus, Option<i32>) {
    use openssl::ocsp::{OcspCertId, OcspRequest, OcspResponse};
    let chain = openssl::x509::X509::stack_from_pem(cert.chain_pem.as_bytes()).unwrap();
    let id = || OcspCertId::from_cert(openssl::hash::MessageDigest::sha1(), &chain[0], &chain[1]).unwrap();
    let mut request = OcspRequest::new().unwrap();
    request.add_id(id()).unwrap();
    let res = server
        .http()
        .post(format!("{}/ocsp/human", server.public_url))
        .header("content-type", "application/ocsp-request")
        .body(request.to_der().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let response = OcspResponse::from_der(&res.bytes().await.unwrap()).unwrap();
    let basic = response.basic().unwrap();
    let status = basic.find_status(&id()).expect("the response names the certificate");
    let reason = (status.status == openssl::ocsp::OcspCertStatus::REVOKED).then(|| status.reason.as_raw());
    (status.status, reason)
}

/// newOrder for `email` under `profile`: the HTTP status and the answer.
async fn new_order(account: &RawClient, email: &str, profile: &str) -> (u16, Value) {
    let payload = json!({"identifiers": [{"type": "email", "value": email}], "profile": profile});
    let res = account.post(&account.url("new-order"), Some(&payload)).await;
    (res.status, res.json())
}

/// The problem a newOrder for `email` gets.
async fn new_order_problem(account: &RawClient, email: &str) -> Value {
    let (status, body) = new_order(account, email, "smime").await;
    assert!(status >= 400, "expected a problem, got HTTP {status}: {body}");
    body
}

/// The human chain's events about a person, oldest first, as (actor, action, details).
async fn person_events(server: &TestServer, email: &str) -> Vec<(String, String, Value)> {
    let auditor = server.admin_token(Role::Auditor);
    let (status, audit) = call(
        server,
        "GET",
        &format!("/admin/api/human/audit?subject=person:{email}&limit=1000"),
        &auditor,
        json!(null),
    )
    .await;
    assert_eq!(status, 200, "{audit}");
    audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["actor"].as_str().unwrap().into(), e["action"].as_str().unwrap().into(), e["details"].clone()))
        .collect()
}

fn problem(status: u16, kind: &str, detail: &str) -> Value {
    let title = reqwest::StatusCode::from_u16(status).unwrap().canonical_reason().unwrap();
    json!({"type": format!("urn:dualca:admin:error:{kind}"), "title": title, "status": status, "detail": detail})
}

async fn standard_recovery_revokes_deactivates_and_enrolls_again(db: Db) {
    let Some(server) = TestServer::start(db).await else { return };
    let email = "cy@example.test";
    let eab = enrolled_person(&server, email, "E-4001").await;
    let account = person_account(&server, &eab).await.unwrap();
    let old = issue_person_certificate(&server, &account, email, "smime").await;
    assert_eq!(ocsp(&server, &old).await.0, openssl::ocsp::OcspCertStatus::GOOD);

    // Email-level proofing and no client-auth certificate: one operator suffices.
    let alice = operator(&server, "alice");
    let (status, body) = call(
        &server,
        "POST",
        &format!("/admin/api/human/people/{email}/recover"),
        &alice,
        json!({"reason": "keyCompromise", "method": "video", "evidence": "laptop stolen; passport shown on video"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!((body["status"].as_str(), body["high_assurance"].as_bool()), (Some("completed"), Some(false)));
    assert_eq!((body["requested_by"].as_str(), body["approved_by"].clone()), (Some("admin:alice"), Value::Null));
    assert_eq!(body["revoked_certificates"], json!([old.serial]));
    let account_id = body["deactivated_accounts"][0].as_str().unwrap().to_string();
    let kid = account.kid.clone().unwrap();
    assert!(kid.ends_with(&format!("/acct/{account_id}")), "{kid} vs {account_id}");
    let recovery_id = body["id"].as_str().unwrap().to_string();

    // The old certificate is revoked with the reason chosen, in the database and for relying
    // parties.
    let record = server.ca.certificate(Track::Human, &old.serial).unwrap();
    assert_eq!((record.status.as_str(), record.revocation_reason), ("revoked", Some(1)));
    let (status, cert) =
        call(&server, "GET", &format!("/admin/api/human/certificates/{}", old.serial), &alice, json!(null)).await;
    assert_eq!((status, cert["revocation_reason"].as_str()), (200, Some("keyCompromise")));
    assert_eq!(ocsp(&server, &old).await, (openssl::ocsp::OcspCertStatus::REVOKED, Some(1)));

    // The old account is dead, and so are the old EAB credentials.
    let dead = new_order_problem(&account, email).await;
    assert_eq!(
        (dead["type"].as_str(), dead["detail"].as_str(), dead["status"].as_u64()),
        (Some("urn:ietf:params:acme:error:unauthorized"), Some("the account is deactivated"), Some(403))
    );
    match person_account(&server, &eab).await {
        Err(p) => assert_eq!(
            (p["type"].as_str(), p["detail"].as_str()),
            (
                Some("urn:ietf:params:acme:error:unauthorized"),
                Some("external account binding refused: the key has been revoked")
            )
        ),
        Ok(_) => panic!("the old EAB credentials bind nothing"),
    }

    // The link and code went to the person by mail, never to the operator.
    let (link, code) = recovery_link(&server, email).await;
    assert!(!body.to_string().contains(&code), "{body}");
    assert!(!body.to_string().contains(link.rsplit('/').next().unwrap()), "{body}");
    let to_manager = mail_to(&server, "boss@example.test", "dualca: the help desk recovered Dee Example").await;
    assert!(to_manager.contains("video; by admin:alice"), "{to_manager}");

    // The link enrolls again (once); the new credentials make an account that orders.
    let wrong = server.http().post(&link).form(&[("code", "00000000")]).send().await.unwrap();
    assert_eq!(wrong.status(), 403);
    let fresh = human::complete_enrollment(&server, &link, &code).await;
    assert_ne!(fresh.0, eab.0);
    let again = server.http().post(&link).form(&[("code", code.as_str())]).send().await.unwrap();
    assert_eq!(again.status(), 403, "the recovery link works once");
    mail_to(&server, email, "dualca: recovery completed").await;
    let person = server.ca.person(email).unwrap();
    assert_eq!((person.status.as_str(), person.proofing_level.as_str()), ("active", "email"));
    let new_account = person_account(&server, &fresh).await.unwrap();
    let new = issue_person_certificate(&server, &new_account, email, "smime").await;
    assert_eq!(ocsp(&server, &new).await.0, openssl::ocsp::OcspCertStatus::GOOD);
    // A standard recovery grants email proofing only: client-auth still needs the help desk.
    let (status, err) = new_order(&new_account, email, "client-auth").await;
    assert_eq!((status, err["type"].as_str()), (403, Some("urn:ietf:params:acme:error:userActionRequired")), "{err}");

    // The recovery is listed, and the check is in the proofing history.
    let (status, list) =
        call(&server, "GET", &format!("/admin/api/human/people/{email}/recoveries"), &alice, json!(null)).await;
    assert_eq!(status, 200);
    assert_eq!(list["recoveries"].as_array().unwrap().len(), 1);
    assert_eq!(
        (list["recoveries"][0]["id"].as_str(), list["recoveries"][0]["status"].as_str()),
        (Some(recovery_id.as_str()), Some("completed"))
    );
    let history = server.ca.proofing_history(email).unwrap();
    let methods: Vec<(&str, &str, &str)> = history
        .iter()
        .map(|(level, method, _, operator, _)| (level.as_str(), method.as_str(), operator.as_str()))
        .collect();
    assert_eq!(
        methods,
        [("email", "email-link", "self"), ("email", "video", "admin:alice"), ("email", "recovery-link", "self")]
    );

    // On the human chain, in order, naming the operator.
    let events = person_events(&server, email).await;
    let from = events.iter().position(|(_, action, _)| action == "person.recovery-requested").unwrap();
    let steps: Vec<(&str, &str)> = events[from..].iter().map(|(a, b, _)| (a.as_str(), b.as_str())).collect();
    assert_eq!(
        steps,
        [
            ("admin:alice", "person.recovery-requested"),
            ("admin:alice", "eab.revoked"),
            ("admin:alice", "person.recovered"),
            ("person:cy@example.test", "person.proofed"),
            ("person:cy@example.test", "eab.created"),
        ]
    );
    let recovered = &events[from + 2].2;
    assert_eq!(recovered["recovery"], recovery_id.as_str());
    assert_eq!(recovered["revoked_certificates"], json!([old.serial]));
    assert_eq!(
        (recovered["reason"].as_str(), recovered["grants_level"].as_str()),
        (Some("keyCompromise"), Some("email"))
    );
    let revoked = server
        .ca
        .audit_events(
            Track::Human,
            &dualca_ca::AuditFilter { serial: Some(old.serial.clone()), ..Default::default() },
            0,
            10,
        )
        .unwrap();
    let revocation = revoked.iter().find(|e| e.action == "certificate.revoked").unwrap();
    assert_eq!(
        (revocation.actor.as_str(), revocation.details["recovery"].as_str()),
        ("admin:alice", Some(recovery_id.as_str()))
    );
    server.stop().await;
}
on_both_databases!(standard_recovery_revokes_deactivates_and_enrolls_again);

async fn client_auth_recovery_needs_a_second_operator(db: Db) {
    let Some(server) = TestServer::start(db).await else { return };
    let email = "dee@example.test";
    let eab = enrolled_person(&server, email, "E-4002").await;
    proof_by_helpdesk(&server, email).await;
    let account = person_account(&server, &eab).await.unwrap();
    let old = issue_person_certificate(&server, &account, email, "client-auth").await;
    let (alice, bob) = (operator(&server, "alice"), operator(&server, "bob"));
    let path = format!("/admin/api/human/people/{email}");

    // Alice asks: pending, and nothing changes yet but a mail to the person.
    let recover =
        json!({"reason": "superseded", "method": "manager-callback", "evidence": "phone lost; manager called back"});
    let (status, body) = call(&server, "POST", &format!("{path}/recover"), &alice, recover.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!((body["status"].as_str(), body["high_assurance"].as_bool()), (Some("pending"), Some(true)));
    assert!(body.get("revoked_certificates").is_none() && body["approval_expires_at"].is_string(), "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    assert_eq!(server.ca.certificate(Track::Human, &old.serial).unwrap().status.as_str(), "valid");
    assert_eq!(ocsp(&server, &old).await.0, openssl::ocsp::OcspCertStatus::GOOD);
    let (status, still) = new_order(&account, email, "client-auth").await;
    assert_eq!(status, 201, "the account still works while the recovery waits: {still}");
    mail_to(&server, email, "dualca: a recovery was requested for you").await;
    // A second request while one waits is a conflict.
    let (status, twice) = call(&server, "POST", &format!("{path}/recover"), &bob, recover.clone()).await;
    assert_eq!(
        (status, twice),
        (
            409,
            problem(
                409,
                "conflict",
                &format!("recovery {id} of {email} is already waiting for approval; approve or cancel it first")
            )
        )
    );

    // Alice may not approve her own request.
    let (status, refused) = call(&server, "POST", &format!("{path}/recoveries/{id}/approve"), &alice, json!({})).await;
    assert_eq!(
        (status, refused),
        (
            403,
            problem(
                403,
                "forbidden",
                &format!("recovery {id} was requested by admin:alice; the two-person rule needs another operator to approve it")
            )
        )
    );
    assert_eq!(server.ca.certificate(Track::Human, &old.serial).unwrap().status.as_str(), "valid");
    assert_eq!(server.ca.recoveries(email).unwrap()[0].status, RecoveryStatus::Pending);

    // Bob approves, and the recovery is carried out.
    let (status, body) = call(&server, "POST", &format!("{path}/recoveries/{id}/approve"), &bob, json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["status"].as_str(), body["approved_by"].as_str()), (Some("completed"), Some("admin:bob")));
    assert_eq!(body["revoked_certificates"], json!([old.serial]));
    let record = server.ca.certificate(Track::Human, &old.serial).unwrap();
    assert_eq!((record.status.as_str(), record.revocation_reason), ("revoked", Some(4)));
    assert_eq!(ocsp(&server, &old).await, (openssl::ocsp::OcspCertStatus::REVOKED, Some(4)));
    assert_eq!(new_order_problem(&account, email).await["detail"], "the account is deactivated");
    let (status, again) = call(&server, "POST", &format!("{path}/recoveries/{id}/approve"), &bob, json!({})).await;
    assert_eq!((status, again), (409, problem(409, "conflict", &format!("recovery {id} was already carried out"))));
    let to_manager = mail_to(&server, "boss@example.test", "dualca: the help desk recovered").await;
    assert!(to_manager.contains("requested by admin:alice, approved by admin:bob"), "{to_manager}");

    // The approved recovery grants help-desk proofing: the new account orders client-auth.
    let (link, code) = recovery_link(&server, email).await;
    let fresh = human::complete_enrollment(&server, &link, &code).await;
    assert_eq!(server.ca.person(email).unwrap().proofing_level.as_str(), "helpdesk");
    let new_account = person_account(&server, &fresh).await.unwrap();
    let new = issue_person_certificate(&server, &new_account, email, "client-auth").await;
    assert_eq!(ocsp(&server, &new).await.0, openssl::ocsp::OcspCertStatus::GOOD);

    // Both operators are on the human chain, in order, and the chain is intact.
    let events = person_events(&server, email).await;
    let from = events.iter().position(|(_, action, _)| action == "person.recovery-requested").unwrap();
    let steps: Vec<(&str, &str)> = events[from..].iter().map(|(a, b, _)| (a.as_str(), b.as_str())).collect();
    assert_eq!(
        steps,
        [
            ("admin:alice", "person.recovery-requested"),
            ("admin:alice", "person.recovery-approval-refused"),
            ("admin:bob", "person.recovery-approved"),
            ("admin:bob", "eab.revoked"),
            ("admin:bob", "person.recovered"),
            ("person:dee@example.test", "person.proofed"),
            ("person:dee@example.test", "eab.created"),
        ]
    );
    let recovered = &events[from + 4].2;
    assert_eq!(
        (recovered["requested_by"].as_str(), recovered["approved_by"].as_str(), recovered["grants_level"].as_str()),
        (Some("admin:alice"), Some("admin:bob"), Some("helpdesk"))
    );
    let filter = dualca_ca::AuditFilter { serial: Some(old.serial.clone()), ..Default::default() };
    let revocation = server.ca.audit_events(Track::Human, &filter, 0, 10).unwrap();
    let revocation = revocation.iter().find(|e| e.action == "certificate.revoked").unwrap();
    assert_eq!(revocation.actor, "admin:bob");
    let history = server.ca.proofing_history(email).unwrap();
    assert!(
        history.iter().any(|(level, method, _, operator, _)| (level.as_str(), method.as_str(), operator.as_str())
            == ("helpdesk", "manager-callback", "admin:alice, approved by admin:bob")),
        "{history:?}"
    );
    assert!(matches!(
        dualca_ca::audit::verify(&server.ca.storage, Track::Human).unwrap(),
        dualca_ca::audit::ChainCheck::Intact { .. }
    ));
    server.stop().await;
}
on_both_databases!(client_auth_recovery_needs_a_second_operator);

async fn recovery_refuses_bad_input_and_wrong_states(db: Db) {
    let Some(server) = TestServer::start(db).await else { return };
    let email = "eve@example.test";
    enrolled_person(&server, email, "E-4003").await;
    proof_by_helpdesk(&server, email).await;
    let (alice, bob) = (operator(&server, "alice"), operator(&server, "bob"));
    let recover = format!("/admin/api/human/people/{email}/recover");
    let body =
        |reason: &str, method: &str, evidence: &str| json!({"reason": reason, "method": method, "evidence": evidence});

    for (input, detail) in [
        (
            body("unspecified", "video", "passport on video"),
            "reason must be keyCompromise or superseded, not \"unspecified\"",
        ),
        (
            body("affiliationChanged", "video", "passport on video"),
            "reason must be keyCompromise or superseded, not \"affiliationChanged\"",
        ),
        (
            body("keyCompromise", "telepathy", "passport on video"),
            "method must be in-person, video or manager-callback, not \"telepathy\"",
        ),
        (
            body("keyCompromise", "video", "  "),
            "a recovery needs an evidence note of at least 5 characters: what was checked, and how",
        ),
    ] {
        assert_eq!(call(&server, "POST", &recover, &alice, input).await, (400, problem(400, "badRequest", detail)));
    }
    let (status, missing) =
        call(&server, "POST", &recover, &alice, json!({"reason": "keyCompromise", "method": "video"})).await;
    assert_eq!((status, missing["type"].as_str()), (400, Some("urn:dualca:admin:error:badRequest")));
    assert!(missing["detail"].as_str().unwrap().contains("missing field `evidence`"), "{missing}");
    let (status, extra) = call(
        &server,
        "POST",
        &recover,
        &alice,
        json!({"reason": "keyCompromise", "method": "video", "evidence": "passport", "code": "1"}),
    )
    .await;
    assert_eq!(status, 400, "{extra}");
    // The role is checked before the body: an auditor is refused, whatever it sends.
    let auditor = server.admin_token(Role::Auditor);
    let (status, denied) = call(&server, "POST", &recover, &auditor, json!({"reason": "bogus"})).await;
    assert_eq!((status, denied), (403, problem(403, "forbidden", "role auditor may not recover people")));
    // Only an active, known person.
    let hr = operator(&server, "hr-feed");
    let joiner = json!({"email": "fay@example.test", "display_name": "Fay", "employee_id": "E-4004", "manager_email": "boss@example.test"});
    assert_eq!(call(&server, "POST", "/admin/api/human/people", &hr, joiner).await.0, 201);
    let good = body("keyCompromise", "in-person", "badge checked at the desk");
    assert_eq!(
        call(&server, "POST", "/admin/api/human/people/fay@example.test/recover", &alice, good.clone()).await,
        (
            409,
            problem(409, "conflict", "fay@example.test is invited, not active: only an active person can be recovered")
        )
    );
    assert_eq!(
        call(&server, "POST", "/admin/api/human/people/nobody@example.test/recover", &alice, good.clone()).await,
        (404, problem(404, "notFound", "no person \"nobody@example.test\""))
    );
    assert!(server.ca.recoveries(email).unwrap().is_empty(), "nothing was recorded");

    // Cancelled by its requester: nothing happens, and it cannot be approved any more.
    let (status, pending) = call(&server, "POST", &recover, &alice, good.clone()).await;
    assert_eq!((status, pending["status"].as_str()), (201, Some("pending")));
    let id = pending["id"].as_str().unwrap().to_string();
    let base = format!("/admin/api/human/people/{email}/recoveries");
    let (status, cancelled) = call(&server, "POST", &format!("{base}/{id}/cancel"), &alice, json!({})).await;
    assert_eq!(
        (status, cancelled["status"].as_str(), cancelled["cancelled_by"].as_str()),
        (200, Some("cancelled"), Some("admin:alice"))
    );
    assert_eq!(
        call(&server, "POST", &format!("{base}/{id}/approve"), &bob, json!({})).await,
        (409, problem(409, "conflict", &format!("recovery {id} was cancelled")))
    );
    assert_eq!(
        call(&server, "POST", &format!("{base}/no-such-recovery/approve"), &bob, json!({})).await,
        (404, problem(404, "notFound", &format!("no recovery \"no-such-recovery\" of {email}")))
    );
    mail_to(&server, email, "dualca: the recovery request was cancelled").await;

    // A recovery of someone else is not found under this person.
    let other = "gus@example.test";
    enrolled_person(&server, other, "E-4005").await;
    proof_by_helpdesk(&server, other).await;
    let (_, theirs) =
        call(&server, "POST", &format!("/admin/api/human/people/{other}/recover"), &alice, good.clone()).await;
    let theirs = theirs["id"].as_str().unwrap().to_string();
    assert_eq!(call(&server, "POST", &format!("{base}/{theirs}/approve"), &bob, json!({})).await.0, 404);

    // An approval comes within a day or not at all; a new request replaces the stale one.
    let (_, stale) = call(&server, "POST", &recover, &alice, good.clone()).await;
    let stale = stale["id"].as_str().unwrap().to_string();
    server.ca.clock.advance(time::Duration::hours(25));
    let (status, expired) = call(&server, "POST", &format!("{base}/{stale}/approve"), &bob, json!({})).await;
    assert_eq!(status, 409, "{expired}");
    assert!(
        expired["detail"].as_str().unwrap().starts_with(&format!("recovery {stale} expired unapproved at ")),
        "{expired}"
    );
    let (status, renewed) = call(&server, "POST", &recover, &alice, good.clone()).await;
    assert_eq!((status, renewed["status"].as_str()), (201, Some("pending")));
    let list = server.ca.recoveries(email).unwrap();
    assert_eq!(
        list.iter().map(|r| r.status).collect::<Vec<_>>(),
        [RecoveryStatus::Pending, RecoveryStatus::Cancelled, RecoveryStatus::Cancelled]
    );
    assert_eq!(list[1].cancelled_by.as_deref(), Some("admin:alice"));

    // A leaver's pending recovery is cancelled with them.
    let (status, _) = call(&server, "POST", &format!("/admin/api/human/people/{email}/leaver"), &bob, json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(server.ca.recoveries(email).unwrap()[0].status, RecoveryStatus::Cancelled);
    let events = person_events(&server, email).await;
    let cancellations: Vec<&str> = events
        .iter()
        .filter(|(_, action, _)| action == "person.recovery-cancelled")
        .map(|(_, _, details)| details["because"].as_str().unwrap())
        .collect();
    assert_eq!(cancellations, ["cancelled", "expired", "leaver"]);
    server.stop().await;
}
on_both_databases!(recovery_refuses_bad_input_and_wrong_states);

async fn the_command_line_keeps_the_two_person_rule(db: Db) {
    let Some(server) = TestServer::start(db).await else { return };
    let email = "hal@example.test";
    enrolled_person(&server, email, "E-4006").await;
    proof_by_helpdesk(&server, email).await;
    // The link in the mail is built from the URL the command is given, as for `person join`.
    let dualca = |user: &str, args: &[&str]| server.cli(user, &[&["person"], args].concat());
    let (ok, stdout, stderr) = dualca(
        "carol",
        &[
            "recover",
            email,
            "--reason",
            "keyCompromise",
            "--method",
            "in-person",
            "--evidence",
            "badge and passport at the desk",
        ],
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("pending  reason=keyCompromise  method=in-person  requested_by=operator:carol"),
        "{stdout}"
    );
    assert!(stdout.contains("two_operators=required"), "{stdout}");
    let id = stdout.split_whitespace().nth(1).unwrap().to_string();
    assert!(stdout.contains(&format!("dualca person approve-recovery {email} -- {id}")), "{stdout}");

    let (ok, _, stderr) = dualca("carol", &["approve-recovery", email, &id]);
    assert!(!ok);
    assert!(stderr.contains("the two-person rule needs another operator to approve it"), "{stderr}");
    // Carol's admin token is still Carol: the API refuses her approval too, and changes nothing.
    let carol = operator(&server, "Carol");
    let path = format!("/admin/api/human/people/{email}/recoveries/{id}/approve");
    let (status, refused) = call(&server, "POST", &path, &carol, json!({})).await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(
        refused["detail"],
        format!(
            "recovery {id} was requested by operator:carol; the two-person rule needs another operator to approve it"
        )
    );
    assert_eq!(server.ca.recoveries(email).unwrap()[0].status, RecoveryStatus::Pending);
    let (ok, stdout, stderr) = dualca("dave", &["approve-recovery", email, "--", &id]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("completed") && stdout.contains("approved_by=operator:dave"), "{stdout}");
    assert!(stdout.contains(&format!("{email} recovered: 0 certificates revoked, 0 accounts deactivated")), "{stdout}");
    let (ok, stdout, _) = dualca("erin", &["recoveries", email]);
    assert!(ok && stdout.starts_with(&format!("recovery {id}  completed")), "{stdout}");
    // The server delivers the link the command queued.
    let (link, code) = recovery_link(&server, email).await;
    human::complete_enrollment(&server, &link, &code).await;
    assert_eq!(server.ca.person(email).unwrap().proofing_level.as_str(), "helpdesk");
    server.stop().await;
}
on_both_databases!(the_command_line_keeps_the_two_person_rule);
