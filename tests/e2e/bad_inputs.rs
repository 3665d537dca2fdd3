//! Bad input gets the exact problem type and HTTP status, and loses nothing: after each refusal
//! the same account and order still work.

use std::time::Duration;

use dualca_ca::Track;
use serde_json::{json, Value};

use crate::common::jws::{b64, flattened, jwk_of, new_p256, new_p384, Alg, RawClient, Response};
use crate::common::{csr, open_human_track, openssl_csr, Db, TestServer};
use crate::on_both_databases;

fn thumbprint(key: &openssl::pkey::PKey<openssl::pkey::Private>) -> String {
    b64(&openssl::sha::sha256(jwk_of(key).to_string().as_bytes()))
}

/// Creates an order for `names` and answers its http-01 challenges; returns (order URL, order).
async fn ready_order(server: &TestServer, raw: &RawClient, names: &[&str]) -> (String, Value) {
    let identifiers: Vec<Value> = names.iter().map(|n| json!({"type": "dns", "value": n})).collect();
    let res = raw.post(&raw.url("new-order"), Some(&json!({"identifiers": identifiers}))).await;
    assert_eq!(res.status, 201, "{}", res.text);
    let order_url = res.header("location").unwrap();
    for authz_url in res.json()["authorizations"].as_array().unwrap() {
        let authz = raw.post(authz_url.as_str().unwrap(), None).await.json();
        let challenge =
            authz["challenges"].as_array().unwrap().iter().find(|c| c["type"] == "http-01").unwrap().clone();
        let token = challenge["token"].as_str().unwrap();
        server.responder.serve(token, &format!("{token}.{}", thumbprint(&raw.key)));
        let res = raw.post(challenge["url"].as_str().unwrap(), Some(&json!({}))).await;
        assert_eq!(res.status, 200, "{}", res.text);
    }
    for _ in 0..100 {
        let order = raw.post(&order_url, None).await.json();
        if order["status"] == "ready" {
            return (order_url, order);
        }
        assert_eq!(order["status"], "pending", "{order}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("order never became ready");
}

async fn account(server: &TestServer, track: Track) -> RawClient {
    let mut raw = RawClient::new(server, track);
    raw.create_account().await;
    raw
}

async fn jws_errors(db: Db) {
    let Some(server) = TestServer::start_with(db, open_human_track).await else {
        return;
    };
    let raw = account(&server, Track::Machine).await;
    let url = raw.url("new-order");
    let payload = json!({"identifiers": [{"type": "dns", "value": "a.example.test"}]});
    let send = |protected: Value| {
        let jws = flattened(&raw.key, &protected, Some(&payload));
        let url = url.clone();
        let raw = &raw;
        async move { raw.send_jws(&url, &jws).await }
    };

    // 1. A nonce the server never issued.
    let mut p = raw.protected(&url).await;
    p["nonce"] = json!("bm90LWEtbm9uY2U");
    send(p).await.assert_problem("badNonce", 400);

    // 2. A replayed nonce. The refusal's own nonce is good for the retry (RFC 8555 §6.5): on
    // PostgreSQL one statement spends the request's nonce and stores the response's, and it
    // stores it even when the first was not fresh.
    let p = raw.protected(&url).await;
    assert_eq!(send(p.clone()).await.status, 201);
    let refused = send(p.clone()).await;
    refused.assert_problem("badNonce", 400);
    let mut retry = p;
    retry["nonce"] = json!(refused.header("replay-nonce").unwrap());
    assert_eq!(send(retry).await.status, 201, "the badNonce response's nonce is accepted");

    // 3. No nonce at all.
    let mut p = raw.protected(&url).await;
    p.as_object_mut().unwrap().remove("nonce");
    send(p).await.assert_problem("badNonce", 400);

    // 4. A url that is not the request URL.
    let p = raw.protected(&raw.url("new-account")).await;
    send(p).await.assert_problem("unauthorized", 403);

    // 5. A kid from the other track's directory.
    let human = account(&server, Track::Human).await;
    let mut p = raw.protected(&url).await;
    p["kid"] = json!(human.kid.clone().unwrap());
    send(p).await.assert_problem("accountDoesNotExist", 400);

    // 6. A kid of this track that names no account.
    let mut p = raw.protected(&url).await;
    p["kid"] = json!(raw.url("acct/doesnotexist"));
    send(p).await.assert_problem("accountDoesNotExist", 400);

    // 7. alg "none", with the list of accepted algorithms.
    let mut p = raw.protected(&url).await;
    p["alg"] = json!("none");
    let body = send(p).await.assert_problem("badSignatureAlgorithm", 400);
    assert_eq!(body["algorithms"], json!(["ES256", "ES384", "RS256", "EdDSA"]));

    // 8. HS256.
    let mut p = raw.protected(&url).await;
    p["alg"] = json!("HS256");
    send(p).await.assert_problem("badSignatureAlgorithm", 400);

    // 9. Both jwk and kid.
    let mut p = raw.protected(&url).await;
    p["jwk"] = jwk_of(&raw.key);
    send(p).await.assert_problem("malformed", 400);

    // 10. Neither jwk nor kid.
    let mut p = raw.protected(&url).await;
    p.as_object_mut().unwrap().remove("kid");
    send(p).await.assert_problem("malformed", 400);

    // 11. The wrong Content-Type.
    let jws = flattened(&raw.key, &raw.protected(&url).await, Some(&payload));
    raw.send_body(&url, jws.to_string(), "application/json").await.assert_problem("malformed", 415);

    // 12. An oversized body.
    let huge = json!({"identifiers": [{"type": "dns", "value": "a".repeat(70 * 1024)}]});
    let jws = flattened(&raw.key, &raw.protected(&url).await, Some(&huge));
    raw.send_jws(&url, &jws).await.assert_problem("malformed", 413);

    // 13. A signature that does not verify.
    let mut jws = flattened(&raw.key, &raw.protected(&url).await, Some(&payload));
    jws["signature"] = json!(b64(&[7u8; 64]));
    raw.send_jws(&url, &jws).await.assert_problem("malformed", 400);

    // 14. ES384 claimed for a P-256 key.
    let mut p = raw.protected(&url).await;
    p["alg"] = json!("ES384");
    send(p).await.assert_problem("badSignatureAlgorithm", 400);

    // 15. The general JWS serialization.
    let jws = flattened(&raw.key, &raw.protected(&url).await, Some(&payload));
    let general = json!({"payload": jws["payload"], "signatures": [{"protected": jws["protected"], "signature": jws["signature"]}]});
    raw.send_jws(&url, &general).await.assert_problem("malformed", 400);

    // 16. A body that is not JSON at all.
    raw.send_body(&url, "not json".into(), "application/jose+json").await.assert_problem("malformed", 400);

    // 17. A payload that is not the resource's JSON.
    let p = raw.protected(&url).await;
    let jws = flattened(&raw.key, &p, Some(&json!({"identifiers": "a.example.test"})));
    raw.send_jws(&url, &jws).await.assert_problem("malformed", 400);

    // Nothing was lost: the same account still orders.
    let res = raw.post(&url, Some(&payload)).await;
    assert_eq!(res.status, 201, "{}", res.text);
    server.stop().await;
}
on_both_databases!(jws_errors);

async fn account_errors(db: Db) {
    let Some(server) = TestServer::start(db).await else {
        return;
    };
    let new_account = |contact: Value| {
        let raw = RawClient::new(&server, Track::Machine);
        async move {
            let res: Response = raw
                .post(&raw.url("new-account"), Some(&json!({"contact": contact, "termsOfServiceAgreed": true})))
                .await;
            res
        }
    };
    // 18. A contact that is not mailto.
    new_account(json!(["tel:+15555550100"])).await.assert_problem("unsupportedContact", 400);
    // 19. A mailto with header fields.
    new_account(json!(["mailto:ops@example.test?subject=hi"])).await.assert_problem("invalidContact", 400);
    // 20. A mailto that is no address.
    new_account(json!(["mailto:nobody"])).await.assert_problem("invalidContact", 400);

    // 21. onlyReturnExisting for a key with no account.
    let raw = RawClient::new(&server, Track::Machine);
    raw.post(&raw.url("new-account"), Some(&json!({"onlyReturnExisting": true})))
        .await
        .assert_problem("accountDoesNotExist", 400);

    // 22. newAccount signed with a kid.
    let other = account(&server, Track::Machine).await;
    other
        .post(&other.url("new-account"), Some(&json!({"termsOfServiceAgreed": true})))
        .await
        .assert_problem("malformed", 400);

    // 23. An RSA-1024 account key.
    let rsa = openssl::rsa::Rsa::generate(1024).unwrap();
    let jwk = json!({"kty": "RSA", "n": b64(&rsa.n().to_vec()), "e": b64(&rsa.e().to_vec())});
    let url = raw.url("new-account");
    let protected = json!({"alg": "RS256", "nonce": raw.nonce().await, "url": url, "jwk": jwk});
    let pkey = openssl::pkey::PKey::from_rsa(rsa).unwrap();
    let protected_b64 = b64(protected.to_string().as_bytes());
    let payload_b64 = b64(b"{}");
    let mut signer = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &pkey).unwrap();
    signer.update(format!("{protected_b64}.{payload_b64}").as_bytes()).unwrap();
    let jws =
        json!({"protected": protected_b64, "payload": payload_b64, "signature": b64(&signer.sign_to_vec().unwrap())});
    raw.send_jws(&url, &jws).await.assert_problem("badPublicKey", 400);

    // 24. An account changing another account.
    let mine = account(&server, Track::Machine).await;
    mine.post(&other.kid.clone().unwrap(), None).await.assert_problem("unauthorized", 403);

    // 25. A status other than deactivated.
    mine.post(&mine.kid.clone().unwrap(), Some(&json!({"status": "revoked"}))).await.assert_problem("malformed", 400);

    // 26. A deactivated account is refused everywhere.
    let res = mine.post(&mine.kid.clone().unwrap(), Some(&json!({"status": "deactivated"}))).await;
    assert_eq!(res.json()["status"], "deactivated");
    mine.post(&mine.url("new-order"), Some(&json!({"identifiers": [{"type": "dns", "value": "a.example.test"}]})))
        .await
        .assert_problem("unauthorized", 403);

    // A P-384 key works (ES384).
    let mut p384 = RawClient::new(&server, Track::Machine);
    p384.key = new_p384();
    p384.alg = Alg::Es384;
    p384.create_account().await;
    server.stop().await;
}
on_both_databases!(account_errors);

async fn order_errors(db: Db) {
    let Some(server) = TestServer::start_with(db, open_human_track).await else {
        return;
    };
    let raw = account(&server, Track::Machine).await;
    let url = raw.url("new-order");
    let order = |body: Value| {
        let (raw, url) = (&raw, url.clone());
        async move { raw.post(&url, Some(&body)).await }
    };
    // 27. An unknown identifier type.
    order(json!({"identifiers": [{"type": "uri", "value": "spiffe://example.test/x"}]}))
        .await
        .assert_problem("unsupportedIdentifier", 400);
    // 28. An email identifier on the machine track.
    order(json!({"identifiers": [{"type": "email", "value": "a@example.test"}]}))
        .await
        .assert_problem("unsupportedIdentifier", 400);
    // 29. A name that is not a domain name, named in the detail.
    let body = order(json!({"identifiers": [{"type": "dns", "value": "bad_name.example.test"}]}))
        .await
        .assert_problem("rejectedIdentifier", 400);
    assert!(body["detail"].as_str().unwrap().contains("bad_name.example.test"));
    // 30. An unknown profile.
    order(json!({"identifiers": [{"type": "dns", "value": "a.example.test"}], "profile": "forever"}))
        .await
        .assert_problem("invalidProfile", 400);
    // 31. notBefore.
    order(json!({"identifiers": [{"type": "dns", "value": "a.example.test"}], "notBefore": "2030-01-01T00:00:00Z"}))
        .await
        .assert_problem("malformed", 400);
    // 32. No identifiers.
    order(json!({"identifiers": []})).await.assert_problem("malformed", 400);
    // 33. An IP address that is not one.
    order(json!({"identifiers": [{"type": "ip", "value": "300.1.2.3"}]})).await.assert_problem("malformed", 400);
    // 34. A wildcard on the human track.
    let human = account(&server, Track::Human).await;
    human
        .post(&human.url("new-order"), Some(&json!({"identifiers": [{"type": "dns", "value": "*.example.test"}]})))
        .await
        .assert_problem("rejectedIdentifier", 400);
    // 35. Reading another account's order.
    let res = order(json!({"identifiers": [{"type": "dns", "value": "a.example.test"}]})).await;
    let other = account(&server, Track::Machine).await;
    other.post(&res.header("location").unwrap(), None).await.assert_problem("unauthorized", 403);
    // 36. An order id that does not exist.
    raw.post(&raw.url("order/nope"), None).await.assert_problem("malformed", 404);
    // 37. An unknown resource, and a GET where POST is required.
    let res = server.http().get(raw.url("no-such-thing")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 404);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let res = server.http().get(raw.url("new-account")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 405);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    server.stop().await;
}
on_both_databases!(order_errors);

async fn finalize_errors(db: Db) {
    let Some(server) = TestServer::start_with(db, open_human_track).await else {
        return;
    };
    let raw = account(&server, Track::Machine).await;

    // 38. Finalize before the order is ready.
    let res = raw
        .post(&raw.url("new-order"), Some(&json!({"identifiers": [{"type": "dns", "value": "b.example.test"}]})))
        .await;
    let finalize = res.json()["finalize"].as_str().unwrap().to_string();
    // newOrder answers with the order as it is stored (it does not read it back), its
    // authorizations in the order of its identifiers.
    let two = raw
        .post(
            &raw.url("new-order"),
            Some(&json!({"identifiers": [{"type": "dns", "value": "www.example.test"}, {"type": "dns", "value": "b.example.test"}]})),
        )
        .await;
    assert_eq!(two.status, 201, "{}", two.text);
    assert_eq!(two.json(), raw.post(&two.header("location").unwrap(), None).await.json());
    assert_eq!(two.json()["authorizations"].as_array().unwrap().len(), 2);
    let (der, _) = csr(&["b.example.test"]);
    raw.post(&finalize, Some(&json!({"csr": b64(&der)}))).await.assert_problem("orderNotReady", 403);

    let (order_url, order) = ready_order(&server, &raw, &["a.example.test"]).await;
    let finalize = order["finalize"].as_str().unwrap().to_string();
    let post_csr = |der: Vec<u8>| {
        let (raw, finalize) = (&raw, finalize.clone());
        async move { raw.post(&finalize, Some(&json!({"csr": b64(&der)}))).await }
    };
    // 39. A CSR with a name the order does not have.
    let (der, _) = csr(&["a.example.test", "www.example.test"]);
    let body = post_csr(der).await.assert_problem("badCSR", 400);
    assert!(body["detail"].as_str().unwrap().contains("www.example.test"), "{body}");
    // 40. A CSR missing a name.
    let (der, _) = csr(&["www.example.test"]);
    post_csr(der).await.assert_problem("badCSR", 400);
    // 41. A CSR signed with the account key.
    post_csr(openssl_csr(&raw.key, &["a.example.test"])).await.assert_problem("badCSR", 400);
    // 42. An RSA-1024 CSR.
    let weak = openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(1024).unwrap()).unwrap();
    post_csr(openssl_csr(&weak, &["a.example.test"])).await.assert_problem("badCSR", 400);
    // 43. Bytes that are no CSR.
    post_csr(vec![0x30, 0x03, 0x02, 0x01, 0x00]).await.assert_problem("badCSR", 400);
    // 44. A CSR whose signature does not verify.
    let (mut der, _) = csr(&["a.example.test"]);
    let last = der.len() - 5;
    der[last] ^= 0xff;
    post_csr(der).await.assert_problem("badCSR", 400);

    // Nothing lost: the order is still ready, and a good CSR finalizes it.
    assert_eq!(raw.post(&order_url, None).await.json()["status"], "ready");
    let good = openssl_csr(&new_p256(), &["a.example.test"]);
    let res = post_csr(good).await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.json()["status"], "valid");
    // finalize answers with the order as it is now stored (it does not read it back).
    assert_eq!(res.json(), raw.post(&order_url, None).await.json());
    // 45. Finalizing a valid order again.
    let (der, _) = csr(&["a.example.test"]);
    post_csr(der).await.assert_problem("orderNotReady", 403);

    // The certificate downloads as a PEM chain, leaf first, for its account only.
    let cert_url = res.json()["certificate"].as_str().unwrap().to_string();
    let res = raw.post(&cert_url, None).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-type").as_deref(), Some("application/pem-certificate-chain"));
    assert_eq!(res.text.matches("BEGIN CERTIFICATE").count(), 2);
    let other = account(&server, Track::Machine).await;
    other.post(&cert_url, None).await.assert_problem("unauthorized", 403);

    // 46. Revocation with a reason subscribers may not use, then twice.
    let der = openssl::x509::X509::stack_from_pem(res.text.as_bytes()).unwrap()[0].to_der().unwrap();
    let revoke = raw.url("revoke-cert");
    raw.post(&revoke, Some(&json!({"certificate": b64(&der), "reason": 2})))
        .await
        .assert_problem("badRevocationReason", 400);
    raw.post(&revoke, Some(&json!({"certificate": b64(&der), "reason": 7})))
        .await
        .assert_problem("badRevocationReason", 400);
    assert_eq!(raw.post(&revoke, Some(&json!({"certificate": b64(&der), "reason": 4}))).await.status, 200);
    // 47. Revoking twice.
    raw.post(&revoke, Some(&json!({"certificate": b64(&der)}))).await.assert_problem("alreadyRevoked", 400);
    // 48. The same certificate on the other track's directory is unknown there.
    let human = account(&server, Track::Human).await;
    human
        .post(&human.url("revoke-cert"), Some(&json!({"certificate": b64(&der)})))
        .await
        .assert_problem("malformed", 404);
    server.stop().await;
}
on_both_databases!(finalize_errors);
