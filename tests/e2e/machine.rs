//! The machine track: accounts bound to inventory assets through EAB, the asset's identifiers
//! and profile enforced, SPIFFE IDs, ARI windows and `replaces`, and decommissioning that
//! revokes everything at once.

use std::time::{Duration, Instant};

use dualca_admin::Role;
use dualca_ca::Track;
use instant_acme::{Account, CertificateIdentifier, ExternalAccountKey, Identifier, NewAccount, NewOrder};
use serde_json::{json, Value};

use crate::common::jws::{b64, eab_binding, jwk_of, RawClient};
use crate::common::{first_cert, serial_of, Db, TestServer};
use crate::on_both_databases;
use crate::protocol::issue;

fn admin_token(server: &TestServer, role: Role) -> String {
    server.admin_token(role)
}

async fn admin(server: &TestServer, method: &str, path: &str, token: &str, body: Value) -> (u16, Value) {
    server.admin_call(method, path, token, body).await
}

/// Registers an asset through the admin API and returns fresh EAB credentials for it.
async fn asset_with_credentials(server: &TestServer, name: &str, names: &[&str], extra: Value) -> (String, Vec<u8>) {
    let token = admin_token(server, Role::Inventory);
    let mut body = json!({
        "name": name, "kind": "service", "owner_team": "payments", "owner_email": "payments@example.test",
        "service": "checkout", "environment": "production",
        "identifiers": names.iter().map(|n| json!({"type": "dns", "value": n})).collect::<Vec<_>>(),
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, created) = admin(server, "POST", "/admin/api/machine/assets", &token, body).await;
    assert_eq!(status, 201, "{created}");
    let (status, creds) =
        admin(server, "POST", &format!("/admin/api/machine/assets/{name}/credentials"), &token, json!({"ttl": "1d"}))
            .await;
    assert_eq!(status, 201, "{creds}");
    let key =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, creds["hmac_key"].as_str().unwrap())
            .unwrap();
    (creds["kid"].as_str().unwrap().to_string(), key)
}

async fn bound_account(server: &TestServer, kid: &str, key: &[u8]) -> Account {
    let eab = ExternalAccountKey::new(kid.to_string(), key);
    let new = NewAccount { contact: &[], terms_of_service_agreed: true, only_return_existing: false };
    Account::builder_with_root(&server.root_pem)
        .unwrap()
        .create(&new, server.directory(Track::Machine), Some(&eab))
        .await
        .unwrap()
        .0
}

async fn eab_binding_is_required_and_checked(db: Db) {
    let Some(server) = TestServer::start(db).await else { return };
    let url = format!("{}/acme/machine/new-account", server.public_url);
    let (kid, key) = asset_with_credentials(&server, "api-1", &["a.example.test"], json!({})).await;
    let try_account = |binding: Option<Value>, track: Track| {
        let server = &server;
        async move {
            let mut raw = RawClient::bare(server, track);
            raw.eab = None;
            let mut payload = json!({"termsOfServiceAgreed": true});
            if let Some(b) = binding {
                payload["externalAccountBinding"] = b;
            }
            let url = raw.url("new-account");
            let _ = &raw.public_url;
            (raw.post(&url, Some(&payload)).await, raw)
        }
    };
    // No binding at all.
    try_account(None, Track::Machine).await.0.assert_problem("externalAccountRequired", 401);
    // A binding whose MAC is made with another key.
    let stranger = RawClient::bare(&server, Track::Machine);
    let forged = eab_binding(&kid, &[9u8; 32], &jwk_of(&stranger.key), &url);
    let mut raw = RawClient::bare(&server, Track::Machine);
    raw.key = stranger.key.clone();
    let res = raw.post(&url, Some(&json!({"termsOfServiceAgreed": true, "externalAccountBinding": forged}))).await;
    res.assert_problem("unauthorized", 403);
    // A MAC of the wrong length is refused like any wrong MAC, and the server carries on.
    let mut short = eab_binding(&kid, &key, &jwk_of(&raw.key), &url);
    short["signature"] = json!(b64(&[1u8; 7]));
    raw.post(&url, Some(&json!({"termsOfServiceAgreed": true, "externalAccountBinding": short})))
        .await
        .assert_problem("unauthorized", 403);
    // An unknown kid.
    let unknown = eab_binding("eab-nobody", &key, &jwk_of(&raw.key), &url);
    raw.post(&url, Some(&json!({"termsOfServiceAgreed": true, "externalAccountBinding": unknown})))
        .await
        .assert_problem("unauthorized", 403);
    // A binding of another key than the account's.
    let other = RawClient::bare(&server, Track::Machine);
    let wrong_key = eab_binding(&kid, &key, &jwk_of(&other.key), &url);
    raw.post(&url, Some(&json!({"termsOfServiceAgreed": true, "externalAccountBinding": wrong_key})))
        .await
        .assert_problem("malformed", 400);
    // A machine kid is useless on the human track's directory when presented there.
    let human_url = format!("{}/acme/human/new-account", server.public_url);
    let mut human = RawClient::bare(&server, Track::Human);
    let binding = eab_binding(&kid, &key, &jwk_of(&human.key), &human_url);
    human.eab = None;
    human
        .post(&human_url, Some(&json!({"termsOfServiceAgreed": true, "externalAccountBinding": binding})))
        .await
        .assert_problem("unauthorized", 403);
    // The right binding works, and binds the account to the asset.
    let good = eab_binding(&kid, &key, &jwk_of(&raw.key), &url);
    let res = raw.post(&url, Some(&json!({"termsOfServiceAgreed": true, "externalAccountBinding": good}))).await;
    assert_eq!(res.status, 201, "{}", res.text);
    // Single-use credentials work once.
    let token = admin_token(&server, Role::Admin);
    let (once_kid, once) = single_use_credentials(&server, &token).await;
    let once_kid = once_kid.as_str();
    for (attempt, expected) in [(0, 201), (1, 403)] {
        let mut fresh = RawClient::bare(&server, Track::Machine);
        fresh.eab = None;
        let binding = eab_binding(once_kid, &once, &jwk_of(&fresh.key), &url);
        let res =
            fresh.post(&url, Some(&json!({"termsOfServiceAgreed": true, "externalAccountBinding": binding}))).await;
        assert_eq!(res.status, expected, "attempt {attempt}: {}", res.text);
    }
    // ... also when eight clients race with them: one account is made, the others are refused.
    // (On PostgreSQL the key's check reads without a lock; the mark of its use is what decides.)
    let (raced_kid, raced) = single_use_credentials(&server, &token).await;
    let mut racers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let mut fresh = RawClient::bare(&server, Track::Machine);
        fresh.eab = None;
        let binding = eab_binding(&raced_kid, &raced, &jwk_of(&fresh.key), &url);
        let url = url.clone();
        racers.spawn(async move {
            let res =
                fresh.post(&url, Some(&json!({"termsOfServiceAgreed": true, "externalAccountBinding": binding}))).await;
            (res.status, res.text)
        });
    }
    let mut statuses = Vec::new();
    while let Some(joined) = racers.join_next().await {
        let (status, text) = joined.unwrap();
        if status != 201 {
            let problem: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(problem["type"], "urn:ietf:params:acme:error:unauthorized", "{text}");
        }
        statuses.push(status);
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 403, 403, 403, 403, 403, 403, 403], "one account for a single-use key");
    // Revoked credentials bind no new account.
    let (status, _) = admin(&server, "POST", &format!("/admin/api/machine/eab/{kid}/revoke"), &token, json!({})).await;
    assert_eq!(status, 200);
    let mut late = RawClient::bare(&server, Track::Machine);
    late.eab = None;
    let binding = eab_binding(&kid, &key, &jwk_of(&late.key), &url);
    late.post(&url, Some(&json!({"termsOfServiceAgreed": true, "externalAccountBinding": binding})))
        .await
        .assert_problem("unauthorized", 403);
    let _ = try_account;
    server.stop().await;
}
on_both_databases!(eab_binding_is_required_and_checked);

/// New single-use EAB credentials of asset api-1: the kid and the HMAC key.
async fn single_use_credentials(server: &TestServer, token: &str) -> (String, Vec<u8>) {
    let (_, creds) =
        admin(server, "POST", "/admin/api/machine/assets/api-1/credentials", token, json!({"single_use": true})).await;
    let key =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, creds["hmac_key"].as_str().unwrap())
            .unwrap();
    (creds["kid"].as_str().unwrap().to_string(), key)
}

async fn asset_policy_spiffe_and_profiles(db: Db) {
    let Some(server) = TestServer::start(db).await else { return };
    let (kid, key) = asset_with_credentials(
        &server,
        "checkout-api",
        &["a.example.test", "www.example.test"],
        json!({"spiffe_id": "spiffe://example.test/payments/checkout", "profile": "week"}),
    )
    .await;
    asset_with_credentials(&server, "other-api", &["b.example.test"], json!({})).await;
    let account = bound_account(&server, &kid, &key).await;
    // A name of another asset is refused, naming it.
    let err = account.new_order(&NewOrder::new(&[Identifier::Dns("b.example.test".into())])).await.err().unwrap();
    match err {
        instant_acme::Error::Api(p) => {
            assert_eq!(p.r#type.as_deref(), Some("urn:ietf:params:acme:error:rejectedIdentifier"));
            assert!(p.detail.unwrap().contains("b.example.test"));
        }
        other => panic!("{other:?}"),
    }
    // The pinned profile refuses another.
    let ids = [Identifier::Dns("a.example.test".into())];
    let err = account.new_order(&NewOrder::new(&ids).profile("short")).await.err().unwrap();
    assert!(
        matches!(err, instant_acme::Error::Api(ref p) if p.r#type.as_deref() == Some("urn:ietf:params:acme:error:invalidProfile")),
        "{err:?}"
    );
    // Issued under the pinned profile, with the SPIFFE ID as a URI SAN.
    let (chain, _) = issue(&server, &account, &["a.example.test", "www.example.test"], None).await;
    let leaf = first_cert(&chain);
    let lifetime = leaf.not_before().diff(leaf.not_after()).unwrap();
    assert_eq!((lifetime.days, lifetime.secs), (7, 0), "notAfter − notBefore is the week profile's");
    let text = String::from_utf8(leaf.to_text().unwrap()).unwrap();
    assert!(text.contains("URI:spiffe://example.test/payments/checkout"), "{text}");
    // The certificate row records the asset, and its audit event names asset, team and service.
    let token = admin_token(&server, Role::Auditor);
    let (_, shown) = admin(&server, "GET", "/admin/api/machine/assets/checkout-api", &token, json!(null)).await;
    assert_eq!(shown["certificates"][0]["serial"], serial_of(&chain));
    let (_, audit) =
        admin(&server, "GET", &format!("/admin/api/machine/audit?serial={}", serial_of(&chain)), &token, json!(null))
            .await;
    let details = &audit["events"][0]["details"];
    assert_eq!(
        (details["asset"].clone(), details["owner_team"].clone(), details["service"].clone()),
        (json!("checkout-api"), json!("payments"), json!("checkout"))
    );
    // A client cannot ask for a URI of its own: the CSR may name only the order's identifiers.
    let mut order = account.new_order(&NewOrder::new(&[Identifier::Dns("a.example.test".into())])).await.unwrap();
    let mut authzs = order.authorizations();
    while let Some(authz) = authzs.next().await {
        let mut authz = authz.unwrap();
        let mut challenge = authz.challenge(instant_acme::ChallengeType::Http01).unwrap();
        server.responder.serve(&challenge.token, challenge.key_authorization().as_str());
        challenge.set_ready().await.unwrap();
    }
    let retry =
        instant_acme::RetryPolicy::new().initial_delay(Duration::from_millis(100)).timeout(Duration::from_secs(20));
    order.poll_ready(&retry).await.unwrap();
    let csr_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["a.example.test".to_string()]).unwrap();
    params.subject_alt_names.push(rcgen::SanType::URI("spiffe://example.test/admin".try_into().unwrap()));
    let csr = params.serialize_request(&csr_key).unwrap();
    let err = order.finalize_csr(csr.der()).await.err().unwrap();
    assert!(
        matches!(err, instant_acme::Error::Api(ref p) if p.r#type.as_deref() == Some("urn:ietf:params:acme:error:badCSR")),
        "{err:?}"
    );
    let _ = b64(&[]);
    server.stop().await;
}
on_both_databases!(asset_policy_spiffe_and_profiles);

fn cert_id(chain: &str) -> String {
    let leaf = first_cert(chain);
    let aki = leaf.authority_key_id().unwrap().as_slice().to_vec();
    dualca_ca::ari::cert_id(&aki, &serial_of(chain))
}

async fn ari_windows_and_replaces(db: Db) {
    let Some(server) = TestServer::start(db).await else { return };
    let (kid, key) = asset_with_credentials(&server, "renewer", &["renew.example.test"], json!({})).await;
    let account = bound_account(&server, &kid, &key).await;
    let (chain, _) = issue(&server, &account, &["renew.example.test"], None).await;
    let id_text = cert_id(&chain);
    let quoted = json!(id_text).to_string();
    let id: CertificateIdentifier<'_> = serde_json::from_str(&quoted).unwrap();
    let (info, retry) = account.renewal_info(&id).await.unwrap();
    let leaf = first_cert(&chain);
    let epoch = openssl::asn1::Asn1Time::from_unix(0).unwrap();
    let secs = |t: &openssl::asn1::Asn1TimeRef| {
        let d = epoch.diff(t).unwrap();
        i64::from(d.days) * 86400 + i64::from(d.secs)
    };
    let (nb, na) = (secs(leaf.not_before()), secs(leaf.not_after()));
    let two_thirds = nb + (na - nb) * 2 / 3;
    let (start, end) = (info.suggested_window.start.unix_timestamp(), info.suggested_window.end.unix_timestamp());
    assert!(start < two_thirds && two_thirds < end, "window {start}..{end} around {two_thirds}");
    assert!(start > nb + (na - nb) / 2 && end < na, "renewal well before expiry");
    assert!(retry.as_secs_f64().round() == 8640.0, "Retry-After is a tenth of the lifetime: {retry:?}");
    // Renew through replaces; the old certificate records its successor.
    let mut order = account
        .new_order(&NewOrder::new(&[Identifier::Dns("renew.example.test".into())]).replaces(id.clone()))
        .await
        .unwrap();
    let mut authzs = order.authorizations();
    while let Some(authz) = authzs.next().await {
        let mut authz = authz.unwrap();
        let mut challenge = authz.challenge(instant_acme::ChallengeType::Http01).unwrap();
        server.responder.serve(&challenge.token, challenge.key_authorization().as_str());
        challenge.set_ready().await.unwrap();
    }
    let retry_policy =
        instant_acme::RetryPolicy::new().initial_delay(Duration::from_millis(100)).timeout(Duration::from_secs(20));
    order.poll_ready(&retry_policy).await.unwrap();
    let (csr, _) = crate::common::csr(&["renew.example.test"]);
    order.finalize_csr(&csr).await.unwrap();
    let renewed = order.poll_certificate(&retry_policy).await.unwrap();
    let old = server.ca.certificate(Track::Machine, &serial_of(&chain)).unwrap();
    assert_eq!(old.replaced_by, Some(serial_of(&renewed)));
    // Replacing it again is 409 alreadyReplaced.
    let mut raw = RawClient::bare(&server, Track::Machine);
    raw.eab = Some((kid.clone(), key.clone()));
    raw.create_account().await;
    let res = raw
        .post(
            &raw.url("new-order"),
            Some(&json!({"identifiers": [{"type": "dns", "value": "renew.example.test"}], "replaces": id_text})),
        )
        .await;
    res.assert_problem("alreadyReplaced", 409);
    let res = raw
        .post(
            &raw.url("new-order"),
            Some(&json!({"identifiers": [{"type": "dns", "value": "renew.example.test"}], "replaces": "not-an-id"})),
        )
        .await;
    res.assert_problem("malformed", 400);
    // An unknown certificate's renewal info is a 404 problem.
    let res =
        server.http().get(format!("{}/acme/machine/renewal-info/AAAA.AAAA", server.public_url)).send().await.unwrap();
    assert_eq!(res.status(), 404);
    // Once the asset is decommissioned, the window lies in the past.
    let token = admin_token(&server, Role::Inventory);
    let (status, _) = admin(&server, "POST", "/admin/api/machine/assets/renewer/decommission", &token, json!({})).await;
    assert_eq!(status, 200);
    let res = server
        .http()
        .get(format!("{}/acme/machine/renewal-info/{}", server.public_url, cert_id(&renewed)))
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    let end = time::OffsetDateTime::parse(
        body["suggestedWindow"]["end"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(end < time::OffsetDateTime::now_utc(), "{body}");
    server.stop().await;
}
on_both_databases!(ari_windows_and_replaces);

async fn decommission_revokes_everything_at_once(db: Db) {
    let Some(server) = TestServer::start(db).await else { return };
    let (kid, key) = asset_with_credentials(&server, "edge-7", &["a.example.test", "b.example.test"], json!({})).await;
    let account = bound_account(&server, &kid, &key).await;
    let (first, _) = issue(&server, &account, &["a.example.test"], None).await;
    let (second, _) = issue(&server, &account, &["b.example.test"], None).await;
    let serials = [serial_of(&first), serial_of(&second)];
    let token = admin_token(&server, Role::Inventory);
    let started = Instant::now();
    let (status, report) =
        admin(&server, "POST", "/admin/api/machine/assets/edge-7/decommission", &token, json!({})).await;
    assert_eq!(status, 200, "{report}");
    let mut revoked: Vec<String> = serde_json::from_value(report["revoked_certificates"].clone()).unwrap();
    revoked.sort();
    let mut expected = serials.to_vec();
    expected.sort();
    assert_eq!(revoked, expected);
    // The database, OCSP and the CRL all show it within a second.
    for serial in &serials {
        let record = server.ca.certificate(Track::Machine, serial).unwrap();
        assert_eq!((record.status.as_str(), record.revocation_reason), ("revoked", Some(5)));
    }
    let machine_pem = std::fs::read(server.root_pem.with_file_name("machine.pem")).unwrap();
    let issuer = openssl::x509::X509::from_pem(&machine_pem).unwrap();
    for chain in [&first, &second] {
        let leaf = first_cert(chain);
        let id = openssl::ocsp::OcspCertId::from_cert(openssl::hash::MessageDigest::sha1(), &leaf, &issuer).unwrap();
        let mut req = openssl::ocsp::OcspRequest::new().unwrap();
        req.add_id(id).unwrap();
        let res = server
            .http()
            .post(format!("{}/ocsp/machine", server.public_url))
            .body(req.to_der().unwrap())
            .send()
            .await
            .unwrap();
        let resp = openssl::ocsp::OcspResponse::from_der(&res.bytes().await.unwrap()).unwrap();
        let basic = resp.basic().unwrap();
        let id = openssl::ocsp::OcspCertId::from_cert(openssl::hash::MessageDigest::sha1(), &leaf, &issuer).unwrap();
        let status = basic.find_status(&id).unwrap();
        assert_eq!(status.status, openssl::ocsp::OcspCertStatus::REVOKED);
        assert_eq!(status.reason, openssl::ocsp::OcspRevokedStatus::STATUS_CESSATION_OF_OPERATION);
    }
    loop {
        let der = server
            .http()
            .get(format!("{}/crl/machine.crl", server.public_url))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let crl = openssl::x509::X509Crl::from_der(&der).unwrap();
        let listed = crl.get_revoked().map(|r| r.len()).unwrap_or(0);
        if listed >= 2 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(1), "the CRL did not list the decommission within a second");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The account cannot order again; the EAB credentials are dead.
    let err = account.new_order(&NewOrder::new(&[Identifier::Dns("a.example.test".into())])).await.err().unwrap();
    assert!(
        matches!(err, instant_acme::Error::Api(ref p) if p.r#type.as_deref() == Some("urn:ietf:params:acme:error:unauthorized")),
        "{err:?}"
    );
    let mut raw = RawClient::bare(&server, Track::Machine);
    raw.eab = Some((kid, key));
    let url = raw.url("new-account");
    let binding = eab_binding(&raw.eab.as_ref().unwrap().0, &raw.eab.as_ref().unwrap().1, &jwk_of(&raw.key), &url);
    raw.post(&url, Some(&json!({"termsOfServiceAgreed": true, "externalAccountBinding": binding})))
        .await
        .assert_problem("unauthorized", 403);
    // A compromised asset's certificates are revoked for keyCompromise.
    let (kid2, key2) = asset_with_credentials(&server, "leaky", &["www.example.test"], json!({})).await;
    let leaky = bound_account(&server, &kid2, &key2).await;
    let (leaked, _) = issue(&server, &leaky, &["www.example.test"], None).await;
    let (status, _) =
        admin(&server, "POST", "/admin/api/machine/assets/leaky/decommission", &token, json!({"compromised": true}))
            .await;
    assert_eq!(status, 200);
    assert_eq!(server.ca.certificate(Track::Machine, &serial_of(&leaked)).unwrap().revocation_reason, Some(1));
    assert!(server.ca.asset("leaky").unwrap().compromised);
    // Decommissioning twice is a conflict.
    assert_eq!(admin(&server, "POST", "/admin/api/machine/assets/edge-7/decommission", &token, json!({})).await.0, 409);
    // The audit chain holds the events in order, and verifies.
    let auditor = admin_token(&server, Role::Auditor);
    let (_, audit) = admin(&server, "GET", "/admin/api/machine/audit?limit=1000", &auditor, json!(null)).await;
    let actions: Vec<String> =
        audit["events"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap().to_string()).collect();
    let at = actions.iter().position(|a| a == "asset.decommissioned").expect("decommission audited");
    assert_eq!(&actions[at + 1..at + 3], ["certificate.revoked", "certificate.revoked"]);
    assert_eq!(actions[at + 3], "account.deactivated");
    assert_eq!(actions[at + 4], "eab.revoked");
    assert!(matches!(
        dualca_ca::audit::verify(&server.ca.storage, Track::Machine).unwrap(),
        dualca_ca::audit::ChainCheck::Intact { .. }
    ));
    server.stop().await;
}
on_both_databases!(decommission_revokes_everything_at_once);

async fn inventory_validation_errors(db: Db) {
    let Some(server) = TestServer::start(db).await else { return };
    let token = admin_token(&server, Role::Inventory);
    let base = json!({"name": "x", "kind": "host", "owner_team": "t", "owner_email": "t@example.test", "service": "s", "environment": "e",
        "identifiers": [{"type": "dns", "value": "a.example.test"}]});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    for (body, why) in [
        (with("kind", json!("toaster")), "kind"),
        (with("owner_email", json!("not-an-address")), "owner_email"),
        (with("identifiers", json!([])), "identifiers"),
        (with("identifiers", json!([{"type": "dns", "value": "bad_name"}])), "dns"),
        (with("spiffe_id", json!("https://example.test/x")), "SPIFFE"),
        (with("profile", json!("forever")), "profile"),
    ] {
        let (status, problem) = admin(&server, "POST", "/admin/api/machine/assets", &token, body).await;
        assert_eq!(status, 400, "{why}: {problem}");
        assert_eq!(problem["type"], "urn:dualca:admin:error:badRequest");
    }
    assert_eq!(admin(&server, "POST", "/admin/api/machine/assets", &token, base.clone()).await.0, 201);
    let (status, problem) = admin(&server, "POST", "/admin/api/machine/assets", &token, with("name", json!("y"))).await;
    assert_eq!(status, 409, "an identifier belongs to one asset: {problem}");
    // Also when two registrations claim it at once, and a name too (on PostgreSQL the
    // registrations' transactions run side by side): one of each pair is made, the other is a
    // conflict, not a server error.
    let claim = |name: &str, value: &str| {
        let mut body = with("name", json!(name));
        body["identifiers"] = json!([{"type": "dns", "value": value}]);
        admin(&server, "POST", "/admin/api/machine/assets", &token, body)
    };
    let (a, b, c, d) = tokio::join!(
        claim("race-1", "race.example.test"),
        claim("race-2", "race.example.test"),
        claim("race-3", "race-3a.example.test"),
        claim("race-3", "race-3b.example.test"),
    );
    for (pair, (first, second)) in [("one identifier", (a, b)), ("one name", (c, d))] {
        let mut statuses = [first.0, second.0];
        statuses.sort_unstable();
        assert_eq!(statuses, [201, 409], "{pair}: {} / {}", first.1, second.1);
    }
    // A malformed body is refused, not read as "no body": the asset stays active.
    let (status, _) =
        admin(&server, "POST", "/admin/api/machine/assets/x/decommission", &token, json!({"compromised": "yes"})).await;
    assert_eq!(status, 400);
    assert_eq!(server.ca.asset("x").unwrap().status.as_str(), "active");
    // A change of owner is audited.
    let (status, _) =
        admin(&server, "PUT", "/admin/api/machine/assets/x", &token, with("owner_team", json!("new-team"))).await;
    assert_eq!(status, 200);
    let auditor = admin_token(&server, Role::Auditor);
    let (_, audit) =
        admin(&server, "GET", "/admin/api/machine/audit?action=asset.owner-changed", &auditor, json!(null)).await;
    assert_eq!(audit["events"][0]["details"]["to"]["team"], "new-team");
    server.stop().await;
}
on_both_databases!(inventory_validation_errors);

fn inventory_entry(name: &str, service: &str) -> Value {
    json!({"name": name, "kind": "host", "owner_team": "fleet", "owner_email": "fleet@example.test", "service": service,
        "environment": "production", "identifiers": [{"type": "dns", "value": format!("{name}.fleet.example.org")}]})
}

async fn inventory_sync_plans_applies_and_guards(db: Db) {
    let Some(server) = TestServer::start(db).await else { return };
    let token = admin_token(&server, Role::Inventory);
    for i in 0..10 {
        let (status, _) =
            admin(&server, "POST", "/admin/api/machine/assets", &token, inventory_entry(&format!("h{i}"), "web")).await;
        assert_eq!(status, 201);
    }
    // The export: h0 moved service, h8 and h9 gone, n1 new.
    let mut export: Vec<Value> = (0..8).map(|i| inventory_entry(&format!("h{i}"), "web")).collect();
    export[0] = inventory_entry("h0", "api");
    export.push(inventory_entry("n1", "web"));
    let file = server.dir.path().join("cmdb.json");
    std::fs::write(&file, serde_json::to_vec(&export).unwrap()).unwrap();
    let file = file.to_str().unwrap();
    let sync = |extra: &[&str]| {
        let (ok, stdout, stderr) = server.cli("test", &[&["asset", "sync", file], extra].concat());
        (ok, format!("{stdout}{stderr}"))
    };
    let active = |name: &str| server.ca.asset(name).map(|a| a.status.as_str() == "active").unwrap_or(false);
    // Dry run: the plan, and nothing changes.
    let (ok, text) = sync(&[]);
    assert!(ok, "{text}");
    for line in
        ["+ create        n1", "~ update        h0 (service)", "- decommission  h8", "- decommission  h9", "dry run"]
    {
        assert!(text.contains(line), "{line:?} in {text}");
    }
    assert!(active("h8") && active("h9") && !active("n1"));
    // Two of ten is more than the 10% guard allows.
    let (ok, text) = sync(&["--apply"]);
    assert!(!ok && text.contains("refused without force"), "{text}");
    assert!(active("h8") && active("h9") && !active("n1"), "a refused sync changes nothing");
    let (ok, text) = sync(&["--apply", "--force"]);
    assert!(ok, "{text}");
    assert!(text.contains("applied: 1 created, 1 updated, 2 decommissioned"), "{text}");
    assert!(!active("h8") && !active("h9") && active("n1"));
    assert_eq!(server.ca.asset("h0").unwrap().service, "api");

    // The API takes CSV; one of nine is within the guard.
    let csv = "name,kind,owner_team,owner_email,service,environment,identifiers,spiffe_id,profile\n".to_string()
        + &(1..8)
            .map(|i| format!("h{i},host,fleet,fleet@example.test,web,production,h{i}.fleet.example.org,,\n"))
            .collect::<String>()
        + "h0,host,fleet,fleet@example.test,api,production,h0.fleet.example.org,,\n";
    let post = |query: &'static str| {
        let (server, token, csv) = (&server, token.clone(), csv.clone());
        async move {
            let res = server
                .http()
                .post(format!("{}/admin/api/machine/assets/sync{query}", server.public_url))
                .bearer_auth(token)
                .header("content-type", "text/csv")
                .body(csv)
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    let (status, plan) = post("").await;
    assert_eq!(status, 200, "{plan}");
    assert_eq!((plan["decommission"].clone(), plan["applied"].clone()), (json!(["n1"]), json!(false)));
    assert!(active("n1"));
    let (status, refused) = post("?apply=true").await;
    assert_eq!(status, 409, "one of nine is more than 10%: {refused}");
    assert!(active("n1"));
    let (status, done) = post("?apply=true&max_share=0.2").await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["report"]["decommissioned"][0]["asset"], "n1");
    assert!(!active("n1"));
    // A bad row is refused as a whole, naming the asset.
    let res = server
        .http()
        .post(format!("{}/admin/api/machine/assets/sync", server.public_url))
        .bearer_auth(&token)
        .json(&json!([inventory_entry("ok", "web"), {"name": "broken", "kind": "toaster", "owner_team": "t", "owner_email": "t@example.test", "service": "s", "environment": "e", "identifiers": [{"type": "dns", "value": "x.example.org"}]}]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("broken"));
    server.stop().await;
}
on_both_databases!(inventory_sync_plans_applies_and_guards);

async fn redeploy_supersedes_after_the_grace_period(db: Db) {
    let Some(server) = TestServer::start(db).await else { return };
    let (kid, key) = asset_with_credentials(&server, "batch-3", &["a.example.test"], json!({})).await;
    let account = bound_account(&server, &kid, &key).await;
    let (old, _) = issue(&server, &account, &["a.example.test"], None).await;
    let token = admin_token(&server, Role::Inventory);
    let (status, body) =
        admin(&server, "POST", "/admin/api/machine/assets/batch-3/redeploy", &token, json!({"grace": "1h"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["superseded"], json!([serial_of(&old)]));
    // During the grace period the old certificate still works, ARI says renew now, and the new
    // deployment gets its certificate.
    assert_eq!(server.ca.run_due_revocations().unwrap(), 0);
    assert_eq!(server.ca.certificate(Track::Machine, &serial_of(&old)).unwrap().status.as_str(), "valid");
    let res = server
        .http()
        .get(format!("{}/acme/machine/renewal-info/{}", server.public_url, cert_id(&old)))
        .send()
        .await
        .unwrap();
    let window: Value = res.json().await.unwrap();
    let end = time::OffsetDateTime::parse(
        window["suggestedWindow"]["end"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(end < time::OffsetDateTime::now_utc(), "{window}");
    let (new, _) = issue(&server, &account, &["a.example.test"], None).await;
    // After it, the scheduled job revokes the old one only, as superseded.
    server.ca.clock.advance(time::Duration::hours(1) + time::Duration::seconds(1));
    assert_eq!(server.ca.run_due_revocations().unwrap(), 1);
    let record = server.ca.certificate(Track::Machine, &serial_of(&old)).unwrap();
    assert_eq!((record.status.as_str(), record.revocation_reason), ("revoked", Some(4)));
    assert_eq!(server.ca.certificate(Track::Machine, &serial_of(&new)).unwrap().status.as_str(), "valid");
    assert_eq!(server.ca.run_due_revocations().unwrap(), 0, "each scheduled revocation runs once");
    server.stop().await;
}
on_both_databases!(redeploy_supersedes_after_the_grace_period);

/// Redeploys of one asset posted at once all succeed and schedule its certificate's revocation
/// once. On PostgreSQL each could find the serial unscheduled before any committed, and the
/// later INSERTs failed on its key.
async fn concurrent_redeploys_schedule_once(db: Db) {
    let Some(server) = TestServer::start(db).await else { return };
    let (kid, key) = asset_with_credentials(&server, "batch-4", &["b.example.test"], json!({})).await;
    let account = bound_account(&server, &kid, &key).await;
    let (old, _) = issue(&server, &account, &["b.example.test"], None).await;
    let token = admin_token(&server, Role::Inventory);
    let mut redeploys = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let path = "/admin/api/machine/assets/batch-4/redeploy";
        redeploys.spawn(server.admin_request("POST", path, &token, json!({"grace": "1h"})));
    }
    for (status, body) in redeploys.join_all().await {
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["superseded"], json!([serial_of(&old)]));
    }
    server.ca.clock.advance(time::Duration::hours(1) + time::Duration::seconds(1));
    assert_eq!(server.ca.run_due_revocations().unwrap(), 1, "one scheduled revocation");
    assert_eq!(server.ca.certificate(Track::Machine, &serial_of(&old)).unwrap().revocation_reason, Some(4));
    server.stop().await;
}
on_both_databases!(concurrent_redeploys_schedule_once);

/// Waits (bounded) for an .eml file in the server's outbox directory that contains `needle`.
async fn mail_containing(server: &TestServer, needle: &str) -> String {
    let dir = server.settings.data_dir.join("outbox");
    for _ in 0..100 {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                if entry.path().extension().is_some_and(|e| e == "eml") {
                    let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                    if text.contains(needle) {
                        return text;
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no mail containing {needle:?} in {}", dir.display());
}

async fn owners_are_told_and_overdue_renewals_alert(db: Db) {
    let Some(server) = TestServer::start(db).await else { return };
    let token = admin_token(&server, Role::Inventory);
    let (kid, key) = asset_with_credentials(&server, "ledger", &["a.example.test"], json!({})).await;
    // A change of owner mails both teams, through the outbox.
    let mut moved = json!({"name": "ledger", "kind": "service", "owner_team": "finance", "owner_email": "finance@example.test",
        "service": "checkout", "environment": "production", "identifiers": [{"type": "dns", "value": "a.example.test"}]});
    let (status, body) = admin(&server, "PUT", "/admin/api/machine/assets/ledger", &token, moved.clone()).await;
    assert_eq!(status, 200, "{body}");
    let mail = mail_containing(&server, "To: finance@example.test").await;
    assert!(mail.contains("changed owner") && mail.contains("Auto-Submitted: auto-generated"), "{mail}");
    mail_containing(&server, "To: payments@example.test").await;
    moved["owner_team"] = json!("finance");

    // A certificate past its ARI window that nothing replaced alerts its team, once.
    let account = bound_account(&server, &kid, &key).await;
    let (chain, _) = issue(&server, &account, &["a.example.test"], None).await;
    assert!(server.ca.overdue_renewals().unwrap().is_empty());
    server.ca.clock.advance(time::Duration::hours(18));
    let overdue = server.ca.overdue_renewals().unwrap();
    assert_eq!(overdue.iter().map(|c| c.serial.clone()).collect::<Vec<_>>(), vec![serial_of(&chain)]);
    assert_eq!(server.ca.alert_overdue_renewals().unwrap(), 1);
    assert_eq!(server.ca.alert_overdue_renewals().unwrap(), 0, "each alert goes out once");
    let mail = mail_containing(&server, "was not renewed").await;
    assert!(mail.contains("finance@example.test") && mail.contains(&serial_of(&chain)), "{mail}");
    let metrics =
        server.http().get(format!("{}/metrics", server.public_url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("dualca_machine_renewals_overdue 1"), "{metrics}");
    let auditor = admin_token(&server, Role::Auditor);
    let (_, audit) =
        admin(&server, "GET", "/admin/api/machine/audit?action=certificate.renewal-overdue", &auditor, json!(null))
            .await;
    assert_eq!(audit["events"].as_array().unwrap().len(), 1);
    // Renewed (here without `replaces`, as certbot does): no longer overdue.
    issue(&server, &account, &["a.example.test"], None).await;
    assert!(server.ca.overdue_renewals().unwrap().is_empty());
    server.stop().await;
}
on_both_databases!(owners_are_told_and_overdue_renewals_alert);
