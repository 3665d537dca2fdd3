//! The RFC 8555 flows, driven by instant-acme (a real ACME client) and, where instant-acme has
//! no call for a resource, by the raw client.

use std::time::Duration;

use dualca_ca::audit::{verify, ChainCheck};
use dualca_ca::Track;
use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
    RevocationReason, RevocationRequest,
};
use openssl::nid::Nid;
use serde_json::json;

use crate::common::human::{enrolled_person, human_account, issue_person_certificate};
use crate::common::jws::{eab_binding, flattened, jwk_of, RawClient};
use crate::common::{csr, first_cert, Db, TestServer};
use crate::on_both_databases;

pub async fn account(server: &TestServer, track: Track) -> Account {
    let eab = (track == Track::Machine).then(|| {
        let (kid, key) = server.eab();
        instant_acme::ExternalAccountKey::new(kid, &key)
    });
    let (account, _credentials) = Account::builder_with_root(&server.root_pem)
        .unwrap()
        .create(
            &NewAccount {
                contact: &["mailto:ops@example.test"],
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            server.directory(track),
            eab.as_ref(),
        )
        .await
        .expect("account is created");
    account
}

fn retry() -> RetryPolicy {
    RetryPolicy::new().initial_delay(Duration::from_millis(100)).backoff(1.5).timeout(Duration::from_secs(20))
}

/// Orders `names`, answers every authorization over http-01 through the test responder, and
/// returns the PEM chain and the leaf's key.
pub async fn issue(
    server: &TestServer,
    account: &Account,
    names: &[&str],
    profile: Option<&str>,
) -> (String, rcgen::KeyPair) {
    let identifiers: Vec<Identifier> = names
        .iter()
        .map(|n| match n.parse() {
            Ok(ip) => Identifier::Ip(ip),
            Err(_) => Identifier::Dns(n.to_string()),
        })
        .collect();
    let mut new_order = NewOrder::new(&identifiers);
    if let Some(profile) = profile {
        new_order = new_order.profile(profile);
    }
    let mut order = account.new_order(&new_order).await.expect("order is created");
    assert_eq!(order.state().status, OrderStatus::Pending);
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.unwrap();
        assert_eq!(authz.status, AuthorizationStatus::Pending);
        let mut challenge = authz.challenge(ChallengeType::Http01).expect("http-01 is offered");
        let key_authorization = challenge.key_authorization();
        server.responder.serve(&challenge.token, key_authorization.as_str());
        challenge.set_ready().await.unwrap();
    }
    let status = order.poll_ready(&retry()).await.unwrap();
    assert_eq!(status, OrderStatus::Ready);
    let (csr_der, key) = csr(names);
    order.finalize_csr(&csr_der).await.unwrap();
    let chain = order.poll_certificate(&retry()).await.unwrap();
    (chain, key)
}

fn chain_verifies(server: &TestServer, chain_pem: &str) {
    use openssl::stack::Stack;
    use openssl::x509::store::X509StoreBuilder;
    use openssl::x509::{X509StoreContext, X509};
    let certs = X509::stack_from_pem(chain_pem.as_bytes()).unwrap();
    assert_eq!(certs.len(), 2, "leaf and issuing CA");
    let root = X509::from_pem(&std::fs::read(&server.root_pem).unwrap()).unwrap();
    let mut store = X509StoreBuilder::new().unwrap();
    store.add_cert(root).unwrap();
    let store = store.build();
    let mut untrusted = Stack::new().unwrap();
    untrusted.push(certs[1].clone()).unwrap();
    let mut ctx = X509StoreContext::new().unwrap();
    let ok = ctx.init(&store, &certs[0], &untrusted, |c| c.verify_cert()).unwrap();
    assert!(ok, "chain does not verify: {}", ctx.error());
}

fn text_of(cert: &openssl::x509::X509) -> String {
    String::from_utf8(cert.to_text().unwrap()).unwrap()
}

async fn full_issuance_on_both_tracks(db: Db) {
    let Some(server) = TestServer::start(db).await else {
        return;
    };

    let machine = account(&server, Track::Machine).await;
    let (chain, _key) = issue(&server, &machine, &["a.example.test", "www.example.test", "127.0.0.1"], None).await;
    chain_verifies(&server, &chain);
    let leaf = first_cert(&chain);
    let text = text_of(&leaf);
    assert!(text.contains("DNS:a.example.test"), "{text}");
    assert!(text.contains("DNS:www.example.test"), "{text}");
    assert!(text.contains("IP Address:127.0.0.1"), "{text}");
    assert!(text.contains("TLS Web Server Authentication"), "{text}");
    assert!(text.contains(&format!("URI:{}/crl/machine.crl", server.public_url)), "{text}");
    assert!(text.contains(&format!("OCSP - URI:{}/ocsp/machine", server.public_url)), "{text}");
    assert!(text.contains(&format!("CA Issuers - URI:{}/ca/machine.der", server.public_url)), "{text}");
    assert!(text.contains("X509v3 Authority Key Identifier"), "{text}");
    assert!(text.contains("X509v3 Subject Key Identifier"), "{text}");
    let lifetime = leaf.not_before().diff(leaf.not_after()).unwrap();
    assert_eq!((lifetime.days, lifetime.secs), (1, 0), "the machine track's default profile is 24 h");
    assert!(leaf.serial_number().to_bn().unwrap().num_bits() >= 128, "serials carry at least 128 random bits");
    assert_eq!(
        leaf.issuer_name().entries_by_nid(Nid::COMMONNAME).next().unwrap().data().to_string().unwrap(),
        "dualca Machine Issuing CA"
    );

    let eab = enrolled_person(&server, "bo@example.test", "E-1", true).await;
    let human = human_account(&server, eab).await;
    let (chain, _key, _serial) = issue_person_certificate(&server, &human, "bo@example.test", "client-auth").await;
    chain_verifies(&server, &chain);
    let leaf = first_cert(&chain);
    let text = text_of(&leaf);
    assert!(text.contains("TLS Web Client Authentication"), "{text}");
    assert!(!text.contains("TLS Web Server Authentication"), "{text}");
    assert!(text.contains(&format!("URI:{}/crl/human.crl", server.public_url)), "{text}");
    let lifetime = leaf.not_before().diff(leaf.not_after()).unwrap();
    assert_eq!((lifetime.days, lifetime.secs), (90, 0));

    // The certificate rows and the audit chains are there.
    for track in Track::ALL {
        match verify(&server.ca.storage, track).unwrap() {
            ChainCheck::Intact { events } => assert!(events >= 5, "{track}: {events} events"),
            broken => panic!("{track} chain broken: {broken:?}"),
        }
    }
    server.stop().await;
}
on_both_databases!(full_issuance_on_both_tracks);

async fn key_change_and_deactivation(db: Db) {
    let Some(server) = TestServer::start(db).await else {
        return;
    };
    let mut account = account(&server, Track::Machine).await;
    let old_thumbprint = account.key_thumbprint().to_string();
    let credentials = account.update_key().await.expect("key change succeeds");
    assert_ne!(account.key_thumbprint(), old_thumbprint);
    // The new key works for orders.
    issue(&server, &account, &["a.example.test"], Some("week")).await;
    let restored = Account::builder_with_root(&server.root_pem).unwrap().from_credentials(credentials).await.unwrap();
    restored.deactivate().await.expect("deactivation succeeds");
    let result = account.new_order(&NewOrder::new(&[Identifier::Dns("a.example.test".into())])).await;
    match result.err().expect("a deactivated account cannot order") {
        instant_acme::Error::Api(p) => {
            assert_eq!(p.r#type.as_deref(), Some("urn:ietf:params:acme:error:unauthorized"));
            assert_eq!(p.status, Some(403));
        }
        other => panic!("unexpected error {other:?}"),
    }
    server.stop().await;
}
on_both_databases!(key_change_and_deactivation);

async fn key_change_to_a_key_in_use_is_a_conflict(db: Db) {
    let Some(server) = TestServer::start(db).await else {
        return;
    };
    let mut first = RawClient::new(&server, Track::Machine);
    first.create_account().await;
    let mut second = RawClient::new(&server, Track::Machine);
    second.create_account().await;
    let url = first.url("key-change");
    let inner_protected = json!({"alg": "ES256", "jwk": jwk_of(&second.key), "url": url});
    let inner_payload = json!({"account": first.kid.clone().unwrap(), "oldKey": jwk_of(&first.key)});
    let inner = flattened(&second.key, &inner_protected, Some(&inner_payload));
    let res = first.post(&url, Some(&inner)).await;
    res.assert_problem("malformed", 409);
    assert_eq!(res.header("location"), second.kid, "409 names the account that holds the key");
    server.stop().await;
}
on_both_databases!(key_change_to_a_key_in_use_is_a_conflict);

/// Accounts changing to one new key at once: one gets it, the others a conflict naming the
/// winner, never a server error. On PostgreSQL two can find the key free before either
/// commits; the later UPDATE then meets the first's row in the unique index.
async fn racing_key_changes_to_one_new_key(db: Db) {
    let Some(server) = TestServer::start(db).await else {
        return;
    };
    for round in 0..6 {
        let mut racers = tokio::task::JoinSet::new();
        let new_key = crate::common::jws::new_p256();
        for _ in 0..4 {
            let mut client = RawClient::new(&server, Track::Machine);
            client.create_account().await;
            let new_key = new_key.clone();
            racers.spawn(async move {
                let url = client.url("key-change");
                let inner_protected = json!({"alg": "ES256", "jwk": jwk_of(&new_key), "url": url});
                let inner_payload = json!({"account": client.kid.clone().unwrap(), "oldKey": jwk_of(&client.key)});
                let inner = flattened(&new_key, &inner_protected, Some(&inner_payload));
                (client.kid.clone().unwrap(), client.post(&url, Some(&inner)).await)
            });
        }
        let mut answers = racers.join_all().await;
        answers.sort_by_key(|(_, res)| res.status);
        let (winner, won) = answers.remove(0);
        assert_eq!(won.status, 200, "round {round}: {}", won.text);
        for (_, lost) in answers {
            lost.assert_problem("malformed", 409);
            assert_eq!(lost.header("location").as_ref(), Some(&winner), "round {round}: the 409 names the winner");
        }
    }
    server.stop().await;
}
on_both_databases!(racing_key_changes_to_one_new_key);

async fn revocation_by_account_and_by_certificate_key(db: Db) {
    let Some(server) = TestServer::start(db).await else {
        return;
    };
    let account = account(&server, Track::Machine).await;
    let (chain, _) = issue(&server, &account, &["a.example.test"], None).await;
    let der = first_cert(&chain).to_der().unwrap();
    let cert = rustls_pki_types::CertificateDer::from(der.clone());
    account
        .revoke(&RevocationRequest { certificate: &cert, reason: Some(RevocationReason::Superseded) })
        .await
        .expect("the ordering account may revoke");
    let again = account.revoke(&RevocationRequest { certificate: &cert, reason: None }).await.unwrap_err();
    match again {
        instant_acme::Error::Api(p) => {
            assert_eq!(p.r#type.as_deref(), Some("urn:ietf:params:acme:error:alreadyRevoked"))
        }
        other => panic!("unexpected {other:?}"),
    }

    // Revocation signed with the certificate's own key (a jwk request, no account).
    let (chain, key) = issue(&server, &account, &["b.example.test"], None).await;
    let der = first_cert(&chain).to_der().unwrap();
    let cert_key = openssl::pkey::PKey::private_key_from_pem(key.serialize_pem().as_bytes()).unwrap();
    let mut raw = RawClient::new(&server, Track::Machine);
    raw.key = cert_key;
    let res = raw
        .post(&raw.url("revoke-cert"), Some(&json!({"certificate": crate::common::jws::b64(&der), "reason": 1})))
        .await;
    assert_eq!(res.status, 200, "{}", res.text);

    // A stranger's account may not revoke someone else's certificate.
    let (chain, _) = issue(&server, &account, &["www.example.test"], None).await;
    let der = first_cert(&chain).to_der().unwrap();
    let mut stranger = RawClient::new(&server, Track::Machine);
    stranger.create_account().await;
    let res =
        stranger.post(&stranger.url("revoke-cert"), Some(&json!({"certificate": crate::common::jws::b64(&der)}))).await;
    res.assert_problem("unauthorized", 403);

    // The first two are revoked in the database with the reasons given; the third is not.
    let first = first_cert(&chain);
    let serial = |c: &openssl::x509::X509| dualca_ca::ids::hex(&c.serial_number().to_bn().unwrap().to_vec());
    assert_eq!(server.ca.certificate(Track::Machine, &serial(&first)).unwrap().status.as_str(), "valid");
    server.stop().await;
}
on_both_databases!(revocation_by_account_and_by_certificate_key);

async fn orders_list_is_paginated(db: Db) {
    let Some(server) = TestServer::start_with(db, |s| s.machine.orders_page_size = Some(2)).await else {
        return;
    };
    let mut raw = RawClient::new(&server, Track::Machine);
    let created = raw.create_account().await;
    let orders_url = created.json()["orders"].as_str().unwrap().to_string();
    let mut made = Vec::new();
    for name in ["a.example.test", "b.example.test", "www.example.test"] {
        let res =
            raw.post(&raw.url("new-order"), Some(&json!({"identifiers": [{"type": "dns", "value": name}]}))).await;
        assert_eq!(res.status, 201, "{}", res.text);
        made.push(res.header("location").unwrap());
    }
    let first = raw.post(&orders_url, None).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let page: Vec<String> = serde_json::from_value(first.json()["orders"].clone()).unwrap();
    assert_eq!(page, made[..2].to_vec());
    let link = first.header("link").unwrap();
    let links: Vec<&str> = first.headers.get_all("link").iter().map(|v| v.to_str().unwrap()).collect();
    let next = links
        .iter()
        .find(|l| l.contains("rel=\"next\""))
        .unwrap_or_else(|| panic!("no next link in {link}"))
        .split(['<', '>'])
        .nth(1)
        .unwrap()
        .to_string();
    let second = raw.post(&next, None).await;
    let page: Vec<String> = serde_json::from_value(second.json()["orders"].clone()).unwrap();
    assert_eq!(page, made[2..].to_vec());
    assert!(!second.headers.get_all("link").iter().any(|l| l.to_str().unwrap().contains("next")));
    server.stop().await;
}
on_both_databases!(orders_list_is_paginated);

async fn wildcard_authorizations_and_deactivation(db: Db) {
    let Some(server) = TestServer::start(db).await else {
        return;
    };
    let mut raw = RawClient::new(&server, Track::Machine);
    raw.create_account().await;
    let res = raw
        .post(&raw.url("new-order"), Some(&json!({"identifiers": [{"type": "dns", "value": "*.example.test"}]})))
        .await;
    assert_eq!(res.status, 201, "{}", res.text);
    let order_url = res.header("location").unwrap();
    let authz_url = res.json()["authorizations"][0].as_str().unwrap().to_string();
    let authz = raw.post(&authz_url, None).await.json();
    assert_eq!(authz["identifier"], json!({"type": "dns", "value": "example.test"}));
    assert_eq!(authz["wildcard"], true);
    let types: Vec<&str> =
        authz["challenges"].as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap()).collect();
    assert_eq!(types, vec!["dns-01"], "a wildcard is proven over DNS only");

    let res = raw.post(&authz_url, Some(&json!({"status": "deactivated"}))).await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.json()["status"], "deactivated");
    let order = raw.post(&order_url, None).await.json();
    assert_eq!(order["status"], "invalid", "an order with a deactivated authorization is invalid");
    server.stop().await;
}
on_both_databases!(wildcard_authorizations_and_deactivation);

async fn newaccount_returns_the_existing_account(db: Db) {
    let Some(server) = TestServer::start(db).await else {
        return;
    };
    let mut raw = RawClient::new(&server, Track::Machine);
    let created = raw.create_account().await;
    let kid = raw.kid.clone().unwrap();
    raw.kid = None;
    let again = raw.post(&raw.url("new-account"), Some(&json!({"onlyReturnExisting": true}))).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.header("location"), Some(kid.clone()));
    assert_eq!(again.json(), created.json());
    // Contacts can be updated.
    raw.kid = Some(kid.clone());
    let updated = raw.post(&kid, Some(&json!({"contact": ["mailto:new@example.test"]}))).await;
    assert_eq!(updated.json()["contact"], json!(["mailto:new@example.test"]));
    server.stop().await;
}
on_both_databases!(newaccount_returns_the_existing_account);

/// A client that sends newAccount again before its first try is answered (a retry after a
/// timeout, say) gets the one account from every try: one 201, the others 200, all naming the
/// same account, none a server error. On PostgreSQL the tries' transactions run side by side,
/// and each lookup of the key may find nothing.
async fn racing_newaccounts_with_one_key_make_one_account(db: Db) {
    let Some(server) = TestServer::start(db).await else {
        return;
    };
    let first = RawClient::new(&server, Track::Machine);
    let url = first.url("new-account");
    let (kid, hmac) = first.eab.clone().expect("a machine-track client has EAB credentials");
    let binding = eab_binding(&kid, &hmac, &jwk_of(&first.key), &url);
    let payload = json!({"termsOfServiceAgreed": true, "externalAccountBinding": binding});
    let mut tries = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let mut client = RawClient::new(&server, Track::Machine);
        client.key = first.key.clone();
        let (url, payload) = (url.clone(), payload.clone());
        tries.spawn(async move {
            let res = client.post(&url, Some(&payload)).await;
            (res.status, res.header("location"), res.text)
        });
    }
    let mut statuses = Vec::new();
    let mut locations = std::collections::BTreeSet::new();
    while let Some(joined) = tries.join_next().await {
        let (status, location, text) = joined.unwrap();
        assert!(status == 200 || status == 201, "HTTP {status}: {text}");
        statuses.push(status);
        locations.insert(location.expect("every answer names the account"));
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 200, 201]);
    assert_eq!(locations.len(), 1, "one account: {locations:?}");
    server.stop().await;
}
on_both_databases!(racing_newaccounts_with_one_key_make_one_account);

async fn directory_and_nonces(db: Db) {
    let Some(server) = TestServer::start_with(db, |s| {
        s.machine.terms_of_service = Some("https://example.test/tos".into());
        s.machine.website = Some("https://example.test".into());
        s.machine.caa_identities = Some(vec!["ca.example.test".into()]);
    })
    .await
    else {
        return;
    };
    let http = server.http();
    let res = http.get(server.directory(Track::Machine)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let dir: serde_json::Value = res.json().await.unwrap();
    let base = format!("{}/acme/machine", server.public_url);
    for (key, path) in [
        ("newNonce", "new-nonce"),
        ("newAccount", "new-account"),
        ("newOrder", "new-order"),
        ("revokeCert", "revoke-cert"),
        ("keyChange", "key-change"),
    ] {
        assert_eq!(dir[key], format!("{base}/{path}"));
    }
    assert_eq!(dir["meta"]["termsOfService"], "https://example.test/tos");
    assert_eq!(dir["meta"]["website"], "https://example.test");
    assert_eq!(dir["meta"]["caaIdentities"], json!(["ca.example.test"]));
    assert_eq!(dir["meta"]["externalAccountRequired"], true, "machine accounts are bound to assets");
    assert_eq!(dir["renewalInfo"], format!("{base}/renewal-info"));
    assert!(dir["meta"]["profiles"]["short"].is_string() && dir["meta"]["profiles"]["week"].is_string());
    let human: serde_json::Value = http.get(server.directory(Track::Human)).send().await.unwrap().json().await.unwrap();
    assert!(human["meta"]["profiles"]["client-auth"].is_string() && human["meta"]["profiles"]["smime"].is_string());
    assert!(human["meta"].get("termsOfService").is_none(), "each track has its own meta");
    assert_eq!(human["meta"]["externalAccountRequired"], true, "human accounts are bound to people");

    let head = http.head(format!("{base}/new-nonce")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    let get = http.get(format!("{base}/new-nonce")).send().await.unwrap();
    assert_eq!(get.status(), 204);
    for res in [&head, &get] {
        assert_eq!(res.headers()["cache-control"], "no-store");
        assert!(res.headers()["replay-nonce"].len() >= 22);
        assert_eq!(res.headers()["link"], format!("<{base}/directory>;rel=\"index\""));
    }
    assert_ne!(head.headers()["replay-nonce"], get.headers()["replay-nonce"]);

    // With terms of service configured, an account must agree to them.
    let raw = RawClient::new(&server, Track::Machine);
    let res = raw.post(&raw.url("new-account"), Some(&json!({"termsOfServiceAgreed": false}))).await;
    res.assert_problem("userActionRequired", 403);
    server.stop().await;
}
on_both_databases!(directory_and_nonces);

/// A validation that finishes quickly is answered in the challenge response itself: the client
/// sees `valid` at once, with no Retry-After to wait out.
async fn quick_validations_answer_in_the_challenge_response(db: Db) {
    let Some(server) = TestServer::start(db).await else { return };
    let mut raw = RawClient::new(&server, Track::Machine);
    raw.create_account().await;
    let payload = json!({"identifiers": [{"type": "dns", "value": "a.example.test"}]});
    let order = raw.post(&raw.url("new-order"), Some(&payload)).await.json();
    let authz = raw.post(order["authorizations"][0].as_str().unwrap(), None).await.json();
    let challenge = authz["challenges"].as_array().unwrap().iter().find(|c| c["type"] == "http-01").unwrap().clone();
    let token = challenge["token"].as_str().unwrap();
    let thumbprint = crate::common::human::thumbprint(&raw);
    server.responder.serve(token, &format!("{token}.{thumbprint}"));
    let res = raw.post(challenge["url"].as_str().unwrap(), Some(&json!({}))).await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.json()["status"], "valid", "{}", res.text);
    assert!(res.json()["validated"].is_string());
    assert!(res.header("retry-after").is_none());
    // The answer is the challenge as recorded: a read gives the same object.
    let read = raw.post(challenge["url"].as_str().unwrap(), None).await;
    assert_eq!(read.json(), res.json());

    // A quick failure answers invalid with its problem, also as recorded, and no second
    // validation: a repeated POST returns the settled challenge unchanged.
    let payload = json!({"identifiers": [{"type": "dns", "value": "b.example.test"}]});
    let order = raw.post(&raw.url("new-order"), Some(&payload)).await.json();
    let authz = raw.post(order["authorizations"][0].as_str().unwrap(), None).await.json();
    let challenge = authz["challenges"].as_array().unwrap().iter().find(|c| c["type"] == "http-01").unwrap().clone();
    let token = challenge["token"].as_str().unwrap();
    server.responder.serve(token, "not.the.key.authorization");
    let url = challenge["url"].as_str().unwrap();
    let res = raw.post(url, Some(&json!({}))).await;
    assert_eq!(res.status, 200, "{}", res.text);
    let failed = res.json();
    assert_eq!(failed["status"], "invalid", "{failed}");
    assert_eq!(failed["error"]["type"], "urn:ietf:params:acme:error:incorrectResponse", "{failed}");
    assert!(failed.get("validated").is_none(), "{failed}");
    assert_eq!(raw.post(url, None).await.json(), failed);
    assert_eq!(raw.post(url, Some(&json!({}))).await.json(), failed);
    let authz = raw.post(order["authorizations"][0].as_str().unwrap(), None).await.json();
    assert_eq!(authz["status"], "invalid", "{authz}");
    server.stop().await;
}
on_both_databases!(quick_validations_answer_in_the_challenge_response);

/// The hourly housekeeping deletes orders that expired more than `keep_orders` ago, with their
/// authorizations and challenges (an RFC 8823 challenge's row among them): their URLs are 404
/// then, while the certificates they issued stay, unlinked, and can still be downloaded and
/// revoked. Younger orders stay, and the audit chains still verify.
async fn expired_orders_are_purged_and_their_certificates_stay(db: Db) {
    let Some(server) = TestServer::start(db).await else {
        return;
    };
    let dns = |name: &str| json!({"identifiers": [{"type": "dns", "value": name}]});
    // A machine order left pending, one that issued, and a person's that issued over email.
    let mut raw = RawClient::new(&server, Track::Machine);
    raw.create_account().await;
    let res = raw.post(&raw.url("new-order"), Some(&dns("a.example.test"))).await;
    assert_eq!(res.status, 201, "{}", res.text);
    let pending_order = res.header("location").unwrap();
    let pending_authz = res.json()["authorizations"][0].as_str().unwrap().to_string();
    let machine = account(&server, Track::Machine).await;
    let (chain, _) = issue(&server, &machine, &["a.example.test"], None).await;
    let machine_serial = crate::common::serial_of(&chain);
    let eab = enrolled_person(&server, "hal@example.test", "E-77", false).await;
    let human = human_account(&server, eab).await;
    let (_, _, human_serial) = issue_person_certificate(&server, &human, "hal@example.test", "smime").await;
    let order_of = |track: Track, serial: &str| {
        let id = server.ca.certificate(track, serial).unwrap().order_id.expect("the certificate names its order");
        format!("{}/acme/{track}/order/{id}", server.public_url)
    };
    let (machine_order, human_order) =
        (order_of(Track::Machine, &machine_serial), order_of(Track::Human, &human_serial));
    let human_order_body = human.post(&human_order, None).await.json();
    let human_authz = human_order_body["authorizations"][0].as_str().unwrap().to_string();
    assert_eq!(human.post(&human_authz, None).await.status, 200);

    let retention = dualca_ca::Retention { keep_sent: 90 * 86_400, keep_orders: 30 * 86_400 };
    assert_eq!(server.ca.housekeeping(retention).unwrap().orders, 0, "nothing has been expired that long");
    // Past the longest order lifetime (the human track's seven days), and thirty days more.
    server.ca.clock.advance(time::Duration::days(38));
    let res = raw.post(&raw.url("new-order"), Some(&dns("www.example.test"))).await;
    assert_eq!(res.status, 201, "{}", res.text);
    let young_order = res.header("location").unwrap();

    assert_eq!(server.ca.housekeeping(retention).unwrap().orders, 3);
    for url in [&pending_order, &pending_authz, &machine_order] {
        raw.post(url, None).await.assert_problem("malformed", 404);
    }
    for url in [&human_order, &human_authz] {
        human.post(url, None).await.assert_problem("malformed", 404);
    }
    assert_eq!(raw.post(&young_order, None).await.status, 200, "a younger order stays");
    for (track, serial) in [(Track::Machine, &machine_serial), (Track::Human, &human_serial)] {
        let cert = server.ca.certificate(track, serial).unwrap();
        assert_eq!((cert.order_id, cert.status.as_str()), (None, "valid"), "{track}");
    }
    let download = human.post(&format!("{}/acme/human/cert/{human_serial}", server.public_url), None).await;
    assert_eq!(download.status, 200, "{}", download.text);
    assert_eq!(crate::common::serial_of(&download.text), human_serial);
    server
        .ca
        .revoke_by_operator(Some(Track::Human), &human_serial, dualca_ca::model::RevocationReason::Superseded, "test")
        .unwrap();
    assert_eq!(server.ca.certificate(Track::Human, &human_serial).unwrap().status.as_str(), "revoked");
    assert_eq!(server.ca.housekeeping(retention).unwrap().orders, 0, "a second run finds nothing");
    for track in Track::ALL {
        let check = verify(&server.ca.storage, track).unwrap();
        assert!(matches!(check, ChainCheck::Intact { .. }), "{track}: {check:?}");
    }
    server.stop().await;
}
on_both_databases!(expired_orders_are_purged_and_their_certificates_stay);
