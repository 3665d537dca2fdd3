//! dns-01 and tls-alpn-01 validated over the network: a real UDP DNS round trip through the
//! configured resolver, and a real acme-tls/1 handshake, each for a pass and a failure.

use std::time::Duration;

use dualca_ca::Track;
use serde_json::{json, Value};

use crate::common::alpn::AlpnResponder;
use crate::common::dns::TxtServer;
use crate::common::jws::{b64, jwk_of, RawClient};
use crate::common::{Db, TestServer};
use crate::on_both_databases;

fn key_authorization(raw: &RawClient, token: &str) -> String {
    let thumbprint = b64(&openssl::sha::sha256(jwk_of(&raw.key).to_string().as_bytes()));
    format!("{token}.{thumbprint}")
}

async fn new_order(raw: &RawClient, identifiers: Value) -> (String, Vec<Value>) {
    let res = raw.post(&raw.url("new-order"), Some(&json!({ "identifiers": identifiers }))).await;
    assert_eq!(res.status, 201, "{}", res.text);
    let mut authzs = Vec::new();
    for url in res.json()["authorizations"].as_array().unwrap() {
        let mut authz = raw.post(url.as_str().unwrap(), None).await.json();
        authz["url"] = url.clone();
        authzs.push(authz);
    }
    (res.header("location").unwrap(), authzs)
}

fn challenge<'a>(authz: &'a Value, kind: &str) -> &'a Value {
    authz["challenges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {authz}"))
}

/// A server with `adjust` applied to its settings, and a machine-track account on it; `None`
/// when the database asked for is not configured.
async fn server_and_account(
    db: Db,
    adjust: impl FnOnce(&mut dualca::config::Settings),
) -> Option<(TestServer, RawClient)> {
    let server = TestServer::start_with(db, adjust).await?;
    let mut raw = RawClient::new(&server, Track::Machine);
    raw.create_account().await;
    Some((server, raw))
}

/// Answers challenge `c` of `authz` (POST `{}`) and waits until the authorization settles;
/// returns the authorization.
async fn answer_and_settle(raw: &RawClient, authz: &Value, c: &Value) -> Value {
    raw.post(c["url"].as_str().unwrap(), Some(&json!({}))).await;
    settled(raw, authz["url"].as_str().unwrap()).await
}

/// Polls an authorization until it leaves pending; returns it.
async fn settled(raw: &RawClient, url: &str) -> Value {
    for _ in 0..200 {
        let authz = raw.post(url, None).await.json();
        if authz["status"] != "pending" {
            return authz;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("authorization {url} stayed pending");
}

async fn dns01_validates_through_the_configured_resolver(db: Db) {
    let dns = TxtServer::start().await;
    let Some((server, raw)) = server_and_account(db, |s| s.validation.resolver = Some(dns.addr)).await else {
        return;
    };
    let (order_url, authzs) = new_order(
        &raw,
        json!([{"type": "dns", "value": "*.example.test"}, {"type": "dns", "value": "www.example.test"}]),
    )
    .await;
    for authz in &authzs {
        let c = challenge(authz, "dns-01");
        let digest = b64(&openssl::sha::sha256(key_authorization(&raw, c["token"].as_str().unwrap()).as_bytes()));
        dns.publish(&format!("_acme-challenge.{}", authz["identifier"]["value"].as_str().unwrap()), &digest);
        let res = raw.post(c["url"].as_str().unwrap(), Some(&json!({}))).await;
        assert_eq!(res.status, 200, "{}", res.text);
    }
    for authz in &authzs {
        let done = settled(&raw, authz["url"].as_str().unwrap()).await;
        assert_eq!(done["status"], "valid", "{done}");
        assert_eq!(challenge(&done, "dns-01")["status"], "valid");
    }
    assert_eq!(raw.post(&order_url, None).await.json()["status"], "ready");

    // A wrong digest fails with incorrectResponse; a missing record with unauthorized.
    let (_, authzs) = new_order(&raw, json!([{"type": "dns", "value": "a.example.test"}])).await;
    let c = challenge(&authzs[0], "dns-01");
    dns.publish("_acme-challenge.a.example.test", "not-the-digest");
    let done = answer_and_settle(&raw, &authzs[0], c).await;
    assert_eq!(done["status"], "invalid");
    assert_eq!(challenge(&done, "dns-01")["error"]["type"], "urn:ietf:params:acme:error:incorrectResponse");

    let (_, authzs) = new_order(&raw, json!([{"type": "dns", "value": "b.example.test"}])).await;
    let c = challenge(&authzs[0], "dns-01");
    let done = answer_and_settle(&raw, &authzs[0], c).await;
    assert_eq!(done["status"], "invalid");
    let error = &challenge(&done, "dns-01")["error"];
    assert!(
        error["type"] == "urn:ietf:params:acme:error:dns" || error["type"] == "urn:ietf:params:acme:error:unauthorized",
        "{error}"
    );
    server.stop().await;
}
on_both_databases!(dns01_validates_through_the_configured_resolver);

/// A dns-01 validation reads the TXT records as the resolver has them now, not as an earlier
/// validation of the name saw them: the test's DNS server answers with a TTL of 60 s, and the
/// record is fixed within it. An operator who publishes the wrong digest, sees the challenge
/// fail and publishes the right one must not wait out the TTL in the CA's own cache.
async fn dns01_reads_records_afresh_for_each_validation(db: Db) {
    let dns = TxtServer::start().await;
    let Some((server, raw)) = server_and_account(db, |s| s.validation.resolver = Some(dns.addr)).await else {
        return;
    };
    let name = "_acme-challenge.other.example.test";
    let (_, authzs) = new_order(&raw, json!([{"type": "dns", "value": "other.example.test"}])).await;
    let c = challenge(&authzs[0], "dns-01");
    dns.publish(name, "a-stale-digest");
    let done = answer_and_settle(&raw, &authzs[0], c).await;
    assert_eq!(challenge(&done, "dns-01")["error"]["type"], "urn:ietf:params:acme:error:incorrectResponse");
    // The right digest, well within the first answer's TTL.
    let (order_url, authzs) = new_order(&raw, json!([{"type": "dns", "value": "other.example.test"}])).await;
    let c = challenge(&authzs[0], "dns-01");
    let digest = b64(&openssl::sha::sha256(key_authorization(&raw, c["token"].as_str().unwrap()).as_bytes()));
    dns.publish(name, &digest);
    let done = answer_and_settle(&raw, &authzs[0], c).await;
    assert_eq!(done["status"], "valid", "{done}");
    assert_eq!(raw.post(&order_url, None).await.json()["status"], "ready");
    server.stop().await;
}
on_both_databases!(dns01_reads_records_afresh_for_each_validation);

async fn tls_alpn01_validates_names_and_ip_addresses(db: Db) {
    let alpn = AlpnResponder::start().await;
    let Some((server, raw)) = server_and_account(db, |s| s.validation.tls_port = alpn.port).await else {
        return;
    };
    for (kind, value) in [("dns", "a.example.test"), ("ip", "127.0.0.1")] {
        let (order_url, authzs) = new_order(&raw, json!([{"type": kind, "value": value}])).await;
        let c = challenge(&authzs[0], "tls-alpn-01");
        alpn.serve(value, &key_authorization(&raw, c["token"].as_str().unwrap()));
        let done = answer_and_settle(&raw, &authzs[0], c).await;
        assert_eq!(done["status"], "valid", "{value}: {done}");
        assert_eq!(raw.post(&order_url, None).await.json()["status"], "ready");
    }
    // A certificate for another key authorization is refused.
    let (_, authzs) = new_order(&raw, json!([{"type": "dns", "value": "b.example.test"}])).await;
    let c = challenge(&authzs[0], "tls-alpn-01");
    alpn.serve("b.example.test", "wrong.key-authorization");
    let done = answer_and_settle(&raw, &authzs[0], c).await;
    assert_eq!(done["status"], "invalid");
    assert_eq!(challenge(&done, "tls-alpn-01")["error"]["type"], "urn:ietf:params:acme:error:incorrectResponse");
    // A certificate for another name is refused.
    let (_, authzs) = new_order(&raw, json!([{"type": "dns", "value": "www.example.test"}])).await;
    let c = challenge(&authzs[0], "tls-alpn-01");
    alpn.serve("other.example.test", &key_authorization(&raw, c["token"].as_str().unwrap()));
    let done = answer_and_settle(&raw, &authzs[0], c).await;
    assert_eq!(done["status"], "invalid");
    assert_eq!(challenge(&done, "tls-alpn-01")["error"]["type"], "urn:ietf:params:acme:error:unauthorized");
    server.stop().await;
}
on_both_databases!(tls_alpn01_validates_names_and_ip_addresses);

/// A name with several addresses is validated at the first that takes the connection: one that
/// refuses it gives way to the next, as an http-01 fetch's does. Here the name's first A record
/// is 127.0.0.2, where nothing listens on the tls-alpn-01 port, and its second 127.0.0.1, where
/// the responder does.
async fn tls_alpn01_tries_the_next_address_when_one_refuses(db: Db) {
    let alpn = AlpnResponder::start().await;
    let dns = TxtServer::start().await;
    let name = "unresolvable.example.test";
    dns.publish_address(name, std::net::Ipv4Addr::new(127, 0, 0, 2));
    dns.publish_address(name, std::net::Ipv4Addr::LOCALHOST);
    let Some((server, raw)) = server_and_account(db, |s| {
        s.validation.tls_port = alpn.port;
        s.validation.resolver = Some(dns.addr);
    })
    .await
    else {
        return;
    };
    let (order_url, authzs) = new_order(&raw, json!([{"type": "dns", "value": name}])).await;
    let c = challenge(&authzs[0], "tls-alpn-01");
    alpn.serve(name, &key_authorization(&raw, c["token"].as_str().unwrap()));
    let done = answer_and_settle(&raw, &authzs[0], c).await;
    assert_eq!(done["status"], "valid", "{done}");
    assert_eq!(raw.post(&order_url, None).await.json()["status"], "ready");
    server.stop().await;
}
on_both_databases!(tls_alpn01_tries_the_next_address_when_one_refuses);

async fn http01_failures_are_recorded_on_the_challenge(db: Db) {
    let Some(server) = TestServer::start(db).await else {
        return;
    };
    let mut raw = RawClient::new(&server, Track::Machine);
    raw.create_account().await;
    // Nothing served for the token: the responder answers 404.
    let (order_url, authzs) = new_order(&raw, json!([{"type": "dns", "value": "a.example.test"}])).await;
    let c = challenge(&authzs[0], "http-01");
    let done = answer_and_settle(&raw, &authzs[0], c).await;
    assert_eq!(done["status"], "invalid");
    let error = &challenge(&done, "http-01")["error"];
    assert_eq!(error["type"], "urn:ietf:params:acme:error:unauthorized", "{error}");
    assert!(error["detail"].as_str().unwrap().contains("404"), "{error}");
    let order = raw.post(&order_url, None).await.json();
    assert_eq!(order["status"], "invalid");
    // The order's problem is the failed challenge's, named by its identifier.
    assert_eq!(order["error"]["type"], "urn:ietf:params:acme:error:unauthorized", "{order}");
    let detail = order["error"]["detail"].as_str().unwrap();
    assert!(detail.starts_with("authorization for dns:a.example.test failed: ") && detail.contains("404"), "{order}");
    // The wrong key authorization.
    let (_, authzs) = new_order(&raw, json!([{"type": "dns", "value": "b.example.test"}])).await;
    let c = challenge(&authzs[0], "http-01");
    server.responder.serve(c["token"].as_str().unwrap(), "something.else");
    let done = answer_and_settle(&raw, &authzs[0], c).await;
    assert_eq!(challenge(&done, "http-01")["error"]["type"], "urn:ietf:params:acme:error:incorrectResponse");
    // A name that resolves nowhere.
    let (_, authzs) = new_order(&raw, json!([{"type": "dns", "value": "unresolvable.example.test"}])).await;
    let c = challenge(&authzs[0], "http-01");
    let done = answer_and_settle(&raw, &authzs[0], c).await;
    assert_eq!(done["status"], "invalid", "{done}");
    server.stop().await;
}
on_both_databases!(http01_failures_are_recorded_on_the_challenge);

async fn http01_follows_redirects_only_to_the_validation_ports(db: Db) {
    let Some(server) = TestServer::start(db).await else { return };
    let mut raw = RawClient::new(&server, Track::Machine);
    raw.create_account().await;
    let port = server.responder.http_port;

    // A redirect on the validation port, to a path that holds the key authorization.
    let (_, authzs) = new_order(&raw, json!([{"type": "dns", "value": "a.example.test"}])).await;
    let c = challenge(&authzs[0], "http-01");
    let token = c["token"].as_str().unwrap();
    server.responder.redirect(token, &format!("http://www.example.test:{port}/.well-known/acme-challenge/moved"));
    server.responder.serve("moved", &key_authorization(&raw, token));
    let done = answer_and_settle(&raw, &authzs[0], c).await;
    assert_eq!(done["status"], "valid", "{done}");

    // A redirect to any other port is refused.
    let (_, authzs) = new_order(&raw, json!([{"type": "dns", "value": "b.example.test"}])).await;
    let c = challenge(&authzs[0], "http-01");
    let token = c["token"].as_str().unwrap();
    server.responder.redirect(token, "http://127.0.0.1:9/.well-known/acme-challenge/moved");
    let done = answer_and_settle(&raw, &authzs[0], c).await;
    assert_eq!(done["status"], "invalid");
    let error = &challenge(&done, "http-01")["error"];
    assert_eq!(error["type"], "urn:ietf:params:acme:error:connection", "{error}");
    assert!(error["detail"].as_str().unwrap().contains("validation ports"), "{error}");

    // A redirect loop ends after ten hops.
    let (_, authzs) = new_order(&raw, json!([{"type": "dns", "value": "www.example.test"}])).await;
    let c = challenge(&authzs[0], "http-01");
    let token = c["token"].as_str().unwrap();
    server.responder.redirect(token, &format!("http://127.0.0.1:{port}/.well-known/acme-challenge/{token}"));
    let done = answer_and_settle(&raw, &authzs[0], c).await;
    assert_eq!(done["status"], "invalid");
    assert!(challenge(&done, "http-01")["error"]["detail"].as_str().unwrap().contains("too many redirects"));
    server.stop().await;
}
on_both_databases!(http01_follows_redirects_only_to_the_validation_ports);

/// A validation that outlasts the challenge POST's wait (half a second) is answered with
/// `processing` and a Retry-After, reads as processing while it runs, and settles to valid.
async fn a_slow_http01_validation_is_answered_processing_then_settles(db: Db) {
    // An http-01 responder that takes 1.2 s to answer each request, with one body for all.
    let slow = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = slow.local_addr().unwrap().port();
    let body = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let served = body.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        for _ in 0..8 {
            let Ok((mut stream, _)) = slow.accept().await else { return };
            let served = served.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                tokio::time::sleep(Duration::from_millis(1200)).await;
                let body = served.lock().unwrap().clone();
                let response =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    let Some((server, raw)) = server_and_account(db, |s| s.validation.http_port = port).await else { return };
    let (order_url, authzs) = new_order(&raw, json!([{"type": "dns", "value": "a.example.test"}])).await;
    let c = challenge(&authzs[0], "http-01");
    *body.lock().unwrap() = key_authorization(&raw, c["token"].as_str().unwrap());
    let url = c["url"].as_str().unwrap();
    let res = raw.post(url, Some(&json!({}))).await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.json()["status"], "processing", "{}", res.text);
    assert_eq!(res.header("retry-after").as_deref(), Some("1"));
    let read = raw.post(url, None).await.json();
    assert_eq!(read["status"], "processing", "{read}");
    let done = settled(&raw, authzs[0]["url"].as_str().unwrap()).await;
    assert_eq!(done["status"], "valid", "{done}");
    assert_eq!(challenge(&done, "http-01")["status"], "valid");
    assert_eq!(raw.post(&order_url, None).await.json()["status"], "ready");
    server.stop().await;
}
on_both_databases!(a_slow_http01_validation_is_answered_processing_then_settles);

/// Each http-01 validation opens a connection of its own and closes it once answered, as
/// Pebble's and Boulder's validators do: a connection kept from an earlier validation would
/// reach whatever address the name had then, not the one it has now, and would carry one
/// account's validation over a connection another account's opened. The responder here keeps
/// connections open (HTTP/1.1 keep-alive) and answers every request on them, so a validator
/// that reused one would be seen doing it.
async fn each_http01_validation_has_a_connection_of_its_own(db: Db) {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[derive(Default)]
    struct Seen {
        /// Requests answered on each accepted connection, in the order accepted.
        requests: Vec<usize>,
        /// Connections the validator closed.
        closed: usize,
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let answers: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let (for_accept, seen_by_accept) = (answers.clone(), seen.clone());
    tokio::spawn(async move {
        for _ in 0..8 {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            let index = {
                let mut seen = seen_by_accept.lock().unwrap();
                seen.requests.push(0);
                seen.requests.len() - 1
            };
            let (answers, seen) = (for_accept.clone(), seen_by_accept.clone());
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let mut buf = [0u8; 1024];
                for _ in 0..16 {
                    let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => pending.extend_from_slice(&buf[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&pending[..end]).to_string();
                    pending.drain(..end + 4);
                    let token =
                        head.split_whitespace().nth(1).unwrap_or("").rsplit('/').next().unwrap_or("").to_string();
                    let body = answers.lock().unwrap().get(&token).cloned().unwrap_or_default();
                    seen.lock().unwrap().requests[index] += 1;
                    // No `Connection: close`: HTTP/1.1 keeps the connection for another request.
                    let response = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                    if stream.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
                seen.lock().unwrap().closed += 1;
            });
        }
    });
    let Some(server) = TestServer::start_with(db, |s| s.validation.http_port = port).await else { return };
    // Two accounts validating the same name, one after the other: the same host and port, so
    // the same key in a client's connection pool.
    for _ in 0..2 {
        let mut raw = RawClient::new(&server, Track::Machine);
        raw.create_account().await;
        let (_, authzs) = new_order(&raw, json!([{"type": "dns", "value": "a.example.test"}])).await;
        let c = challenge(&authzs[0], "http-01");
        let token = c["token"].as_str().unwrap();
        answers.lock().unwrap().insert(token.to_string(), key_authorization(&raw, token));
        let done = answer_and_settle(&raw, &authzs[0], c).await;
        assert_eq!(done["status"], "valid", "{done}");
    }
    let mut closed = 0;
    for _ in 0..100 {
        closed = seen.lock().unwrap().closed;
        if closed >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let requests = seen.lock().unwrap().requests.clone();
    assert_eq!(requests, vec![1, 1], "requests answered on each connection the validator opened");
    assert_eq!(closed, 2, "the validator closes each connection once its validation is answered");
    server.stop().await;
}
on_both_databases!(each_http01_validation_has_a_connection_of_its_own);
