//! The admin API: every route under every role, denials audited, tokens revoked, the audit log
//! filtered, paged and exported, tampering found by `dualca audit verify`, signed checkpoints,
//! the OpenAPI document, and /metrics.

use std::process::Command;

use dualca_admin::{AdminAuth, Role};
use dualca_ca::Track;
use serde_json::Value;

use crate::common::{serial_of, Db, TestServer};
use crate::on_both_databases;
use crate::protocol::{account, issue};

fn auth(server: &TestServer) -> AdminAuth {
    server.settings.admin_auth().unwrap()
}

fn token(server: &TestServer, role: Role) -> String {
    auth(server).mint(role, &format!("{}-tester", role.as_str()), 3600, server.ca.clock.unix()).unwrap().0
}

async fn get(server: &TestServer, path: &str, token: Option<&str>) -> (u16, String, reqwest::header::HeaderMap) {
    let mut req = server.http().get(format!("{}{path}", server.public_url));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    (status, res.text().await.unwrap(), headers)
}

async fn post(server: &TestServer, path: &str, token: &str, body: Value) -> (u16, String) {
    let res =
        server.http().post(format!("{}{path}", server.public_url)).bearer_auth(token).json(&body).send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// The expected matrix, written out rather than derived from the code under test.
fn allowed(role: Role, route: &str, track: Track) -> bool {
    use Role::*;
    match (route, role) {
        ("whoami", _) => true,
        (_, Admin) => true,
        ("revoke", _) => false,
        ("audit", Auditor) => true,
        ("audit", _) => false,
        ("dashboard" | "certificates" | "certificate", Auditor) => true,
        ("dashboard" | "certificates" | "certificate", Inventory) => track == Track::Machine,
        ("dashboard" | "certificates" | "certificate", Helpdesk) => track == Track::Human,
        _ => unreachable!("{route}"),
    }
}

async fn role_matrix(db: Db) {
    // A certificate on each track is all it needs from the human track.
    let Some(server) = TestServer::start_with(db, crate::common::open_human_track).await else { return };
    let mut serials = std::collections::HashMap::new();
    for track in Track::ALL {
        let acct = account(&server, track).await;
        let (chain, _) = issue(&server, &acct, &["a.example.test"], None).await;
        serials.insert(track, serial_of(&chain));
    }
    let tokens: Vec<(Role, String)> = Role::ALL.iter().map(|r| (*r, token(&server, *r))).collect();
    // Every route that needs a token answers 401 without one.
    for route in dualca_admin::api::ROUTES.iter().filter(|r| r.permission.is_some()) {
        let path = route
            .path
            .replace("{track}", "machine")
            .replace("{serial}", &serials[&Track::Machine])
            .replace("{name}", "test-fleet")
            .replace("{kid}", "eab-nothing")
            .replace("{email}", "nobody@example.test")
            .replace("{id}", "no-such-recovery");
        let method = reqwest::Method::from_bytes(route.method.as_bytes()).unwrap();
        let status = server
            .http()
            .request(method, format!("{}{path}", server.public_url))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        assert_eq!(status, 401, "{} {path} without a token", route.method);
    }
    let mut checked = 0;
    for track in Track::ALL {
        let serial = &serials[&track];
        let cases = [
            ("whoami", "GET", "/admin/api/whoami".to_string()),
            ("dashboard", "GET", format!("/admin/api/{track}/dashboard")),
            ("audit", "GET", format!("/admin/api/{track}/audit")),
            ("certificates", "GET", format!("/admin/api/{track}/certificates")),
            ("certificate", "GET", format!("/admin/api/{track}/certificates/{serial}")),
        ];
        for (role, tok) in &tokens {
            for (name, _, path) in &cases {
                let (status, body, headers) = get(&server, path, Some(tok)).await;
                let expected = if allowed(*role, name, track) { 200 } else { 403 };
                assert_eq!(status, expected, "{} {path}: {body}", role.as_str());
                if status == 403 {
                    assert_eq!(headers["content-type"], "application/problem+json");
                }
                checked += 1;
            }
            // Revoke is tried by the roles that may not first, so the certificate is still valid
            // when the admin's turn comes (Role::ALL starts with Admin, so go in reverse).
        }
        for (role, tok) in tokens.iter().rev() {
            let (status, body) = post(
                &server,
                &format!("/admin/api/{track}/certificates/{serial}/revoke"),
                tok,
                serde_json::json!({"reason": "superseded"}),
            )
            .await;
            let expected = if allowed(*role, "revoke", track) { 200 } else { 403 };
            assert_eq!(status, expected, "{} revoke on {track}: {body}", role.as_str());
            checked += 1;
        }
        assert_eq!(server.ca.certificate(track, serial).unwrap().status.as_str(), "revoked");
    }
    assert_eq!(checked, 2 * 4 * 6, "every route under every role on both tracks");
    // The inventory routes: admin and inventory manage; the auditor reads; helpdesk neither.
    let may_read = |r: Role| matches!(r, Role::Admin | Role::Inventory | Role::Auditor);
    let may_manage = |r: Role| matches!(r, Role::Admin | Role::Inventory);
    let expect = |allowed: bool, ok: u16| if allowed { ok } else { 403 };
    for (role, tok) in &tokens {
        let own = format!("matrix-{}", role.as_str());
        let body = serde_json::json!({"name": own, "kind": "host", "owner_team": "t", "owner_email": "t@example.test",
            "service": "s", "environment": "e", "identifiers": [{"type": "dns", "value": format!("{own}.example.org")}]});
        let (status, text) = post(&server, "/admin/api/machine/assets", tok, body.clone()).await;
        assert_eq!(status, expect(may_manage(*role), 201), "{} registers: {text}", role.as_str());
        let target = if may_manage(*role) { own.clone() } else { "test-fleet".to_string() };
        assert_eq!(
            get(&server, "/admin/api/machine/assets", Some(tok)).await.0,
            expect(may_read(*role), 200),
            "{} lists",
            role.as_str()
        );
        assert_eq!(
            get(&server, "/admin/api/machine/assets/test-fleet", Some(tok)).await.0,
            expect(may_read(*role), 200)
        );
        let mut changed = body.clone();
        changed["name"] = serde_json::json!(target);
        changed["service"] = serde_json::json!("changed");
        let res = server
            .http()
            .put(format!("{}/admin/api/machine/assets/{target}", server.public_url))
            .bearer_auth(tok)
            .json(&changed)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        assert_eq!(status, expect(may_manage(*role), 200), "{} updates: {}", role.as_str(), res.text().await.unwrap());
        let (status, _) =
            post(&server, "/admin/api/machine/assets/test-fleet/credentials", tok, serde_json::json!({})).await;
        assert_eq!(status, expect(may_manage(*role), 201), "{} credentials", role.as_str());
        let (status, _) =
            post(&server, &format!("/admin/api/machine/assets/{target}/redeploy"), tok, serde_json::json!({})).await;
        assert_eq!(status, expect(may_manage(*role), 200), "{} redeploys", role.as_str());
        let (status, _) =
            post(&server, &format!("/admin/api/machine/assets/{target}/decommission"), tok, serde_json::json!({}))
                .await;
        assert_eq!(status, expect(may_manage(*role), 200), "{} decommissions", role.as_str());
        checked += 7;
    }
    assert_eq!(checked, 2 * 4 * 6 + 4 * 7, "and every inventory route under every role");
    // The people routes: admin and helpdesk manage; the auditor reads; inventory neither.
    let may_read = |r: Role| matches!(r, Role::Admin | Role::Helpdesk | Role::Auditor);
    let may_manage = |r: Role| matches!(r, Role::Admin | Role::Helpdesk);
    for (i, (role, tok)) in tokens.iter().enumerate() {
        let email = format!("person{i}@example.test");
        let joiner = serde_json::json!({"email": email, "display_name": "P", "employee_id": format!("E{i}"), "manager_email": "m@example.test"});
        let (status, _) = post(&server, "/admin/api/human/people", tok, joiner).await;
        assert_eq!(status, expect(may_manage(*role), 201), "{} joins", role.as_str());
        let target = if may_manage(*role) { email.clone() } else { "person0@example.test".to_string() };
        assert_eq!(get(&server, "/admin/api/human/people", Some(tok)).await.0, expect(may_read(*role), 200));
        assert_eq!(
            get(&server, "/admin/api/human/people/person0@example.test", Some(tok)).await.0,
            expect(may_read(*role), 200)
        );
        let res = server
            .http()
            .put(format!("{}/admin/api/human/people/{target}", server.public_url))
            .bearer_auth(tok)
            .json(&serde_json::json!({"manager_email": "m2@example.test"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), expect(may_manage(*role), 200), "{} moves", role.as_str());
        // Proofing needs an active person: an invited one is a conflict, which still shows the
        // role was allowed past the permission check.
        let (status, _) = post(
            &server,
            &format!("/admin/api/human/people/{target}/proof"),
            tok,
            serde_json::json!({"method": "video", "evidence": "checked on video"}),
        )
        .await;
        assert_eq!(status, expect(may_manage(*role), 409), "{} proofs", role.as_str());
        // Recovery, too, needs an active person; unknown recoveries are not found.
        assert_eq!(
            get(&server, &format!("/admin/api/human/people/{target}/recoveries"), Some(tok)).await.0,
            expect(may_read(*role), 200),
            "{} lists recoveries",
            role.as_str()
        );
        let (status, _) = post(
            &server,
            &format!("/admin/api/human/people/{target}/recover"),
            tok,
            serde_json::json!({"reason": "keyCompromise", "method": "video", "evidence": "checked on video"}),
        )
        .await;
        assert_eq!(status, expect(may_manage(*role), 409), "{} recovers", role.as_str());
        for action in ["approve", "cancel"] {
            let path = format!("/admin/api/human/people/{target}/recoveries/no-such-recovery/{action}");
            let (status, _) = post(&server, &path, tok, serde_json::json!({})).await;
            assert_eq!(status, expect(may_manage(*role), 404), "{} {action}s a recovery", role.as_str());
        }
        let (status, _) =
            post(&server, &format!("/admin/api/human/people/{target}/leaver"), tok, serde_json::json!({})).await;
        assert_eq!(status, expect(may_manage(*role), 200), "{} records a leaver", role.as_str());
    }
    let fleet = server.ca.asset("test-fleet").unwrap();
    assert_eq!(fleet.status.as_str(), "active", "denied requests changed nothing");
    assert_eq!(fleet.service, "tests");
    // Denials are on the chain of the track they concerned.
    let admin = &tokens[0].1;
    let (status, body, _) = get(&server, "/admin/api/human/audit?action=admin.denied", Some(admin)).await;
    assert_eq!(status, 200);
    let denials = serde_json::from_str::<Value>(&body).unwrap()["events"].as_array().unwrap().len();
    assert!(denials >= 5, "{body}");
    server.stop().await;
}
on_both_databases!(role_matrix);

async fn tokens_are_checked_and_can_be_revoked(db: Db) {
    let Some(server) = TestServer::start(db).await else { return };
    let (tok, claims) = auth(&server).mint(Role::Auditor, "alice", 3600, server.ca.clock.unix()).unwrap();
    assert_eq!(get(&server, "/admin/api/whoami", Some(&tok)).await.0, 200);
    // A token signed by another key, an expired one, and garbage.
    let other = tempfile::tempdir().unwrap();
    let foreign = AdminAuth::load_or_create(other.path(), dualca_admin::TokenAlgorithm::EdDSA).unwrap();
    let (forged, _) = foreign.mint(Role::Admin, "mallory", 3600, server.ca.clock.unix()).unwrap();
    assert_eq!(get(&server, "/admin/api/whoami", Some(&forged)).await.0, 401);
    let (expired, _) = auth(&server).mint(Role::Admin, "late", 60, server.ca.clock.unix() - 3600).unwrap();
    assert_eq!(get(&server, "/admin/api/whoami", Some(&expired)).await.0, 401);
    assert_eq!(get(&server, "/admin/api/whoami", Some("not.a.token")).await.0, 401);
    // The CLI mints tokens the server accepts, and revokes them.
    let (ok, out, err) =
        server.cli("test", &["admin", "token", "--role", "helpdesk", "--subject", "bob", "--ttl", "1h"]);
    assert!(ok, "{err}");
    let cli_token = out.trim().to_string();
    let (status, body, _) = get(&server, "/admin/api/whoami", Some(&cli_token)).await;
    assert_eq!((status, serde_json::from_str::<Value>(&body).unwrap()["role"].clone()), (200, "helpdesk".into()));
    let (ok, _, err) = server.cli("test", &["admin", "revoke-token", &claims.jti]);
    assert!(ok, "{err}");
    let (status, body, _) = get(&server, "/admin/api/whoami", Some(&tok)).await;
    assert_eq!(status, 401, "{body}");
    // A jti may begin with '-' (base64url); the CLI takes it as the value, not as a flag.
    let (ok, _, err) = server.cli("test", &["admin", "revoke-token", "-Leading-dash"]);
    assert!(ok, "{err}");
    assert!(body.contains("revoked"));
    server.stop().await;
}
on_both_databases!(tokens_are_checked_and_can_be_revoked);

async fn audit_log_filters_pages_exports_and_detects_tampering(db: Db) {
    let Some(server) = TestServer::start(db).await else { return };
    let acct = account(&server, Track::Machine).await;
    let (chain, _) = issue(&server, &acct, &["a.example.test"], None).await;
    issue(&server, &acct, &["b.example.test"], None).await;
    let serial = serial_of(&chain);
    let auditor = token(&server, Role::Auditor);

    let (_, body, _) = get(&server, "/admin/api/machine/audit?action=certificate.issued", Some(&auditor)).await;
    let events = serde_json::from_str::<Value>(&body).unwrap()["events"].as_array().unwrap().clone();
    let acme_issued: Vec<&Value> =
        events.iter().filter(|e| e["actor"].as_str().unwrap().starts_with("account:")).collect();
    assert_eq!(acme_issued.len(), 2, "{body}");
    let (_, body, _) = get(&server, &format!("/admin/api/machine/audit?serial={serial}"), Some(&auditor)).await;
    let events = serde_json::from_str::<Value>(&body).unwrap()["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["subject"], format!("certificate:{serial}"));
    // Paging: two at a time reaches every event exactly once, in order.
    let (_, all, _) = get(&server, "/admin/api/machine/audit?limit=1000", Some(&auditor)).await;
    let all: Vec<i64> = serde_json::from_str::<Value>(&all).unwrap()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    let mut paged = Vec::new();
    let mut cursor = 0;
    for _ in 0..1000 {
        let (_, body, _) =
            get(&server, &format!("/admin/api/machine/audit?limit=2&cursor={cursor}"), Some(&auditor)).await;
        let page: Value = serde_json::from_str(&body).unwrap();
        paged.extend(page["events"].as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()));
        match page["next_cursor"].as_i64() {
            Some(next) => cursor = next,
            None => break,
        }
    }
    assert_eq!(paged, all);
    // A time range in the future is empty; a bad one is refused.
    let (_, body, _) = get(&server, "/admin/api/machine/audit?from=2100-01-01T00:00:00Z", Some(&auditor)).await;
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["events"], serde_json::json!([]));
    assert_eq!(get(&server, "/admin/api/machine/audit?from=yesterday", Some(&auditor)).await.0, 400);
    // Exports.
    let (status, jsonl, headers) = get(&server, "/admin/api/machine/audit?format=jsonl", Some(&auditor)).await;
    assert_eq!((status, headers["content-type"].to_str().unwrap()), (200, "application/x-ndjson"));
    assert_eq!(jsonl.lines().count(), all.len());
    assert!(jsonl.lines().all(|l| serde_json::from_str::<Value>(l).is_ok()));
    let (_, csv, _) = get(&server, "/admin/api/machine/audit?format=csv", Some(&auditor)).await;
    assert!(csv.starts_with("track,seq,at,actor,action,subject,details,prev_hash,hash\n"));
    assert_eq!(csv.lines().count(), all.len() + 1);

    // A signed checkpoint anyone can fetch and verify with the public key.
    let (status, body, _) = get(&server, "/admin/api/machine/audit/checkpoint", None).await;
    assert_eq!(status, 200);
    let cp: Value = serde_json::from_str(&body).unwrap();
    let key = jsonwebtoken::DecodingKey::from_ed_pem(cp["public_key"].as_str().unwrap().as_bytes()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    let claims = jsonwebtoken::decode::<Value>(cp["checkpoint"].as_str().unwrap(), &key, &validation).unwrap().claims;
    assert_eq!(claims["seq"], *all.last().unwrap());
    assert_eq!(claims["hash"], cp["hash"]);

    // `dualca audit verify` passes, then names the row edited behind its back.
    let verify = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dualca"));
        cmd.args(["audit", "verify"]).arg("--data-dir").arg(&server.settings.data_dir).env("RUST_LOG", "warn");
        if !server.settings.database_url.is_empty() {
            cmd.args(["--database-url", &server.settings.database_url]);
        }
        cmd.output().unwrap()
    };
    let out = verify();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let tampered = all[all.len() / 2];
    let sql =
        format!("UPDATE audit_events SET actor = 'account:someone-else' WHERE track = 'machine' AND seq = {tampered}");
    match db {
        Db::Sqlite => {
            use diesel::{Connection, RunQueryDsl};
            let path = server.settings.data_dir.join("dualca.db");
            let mut conn = diesel::sqlite::SqliteConnection::establish(path.to_str().unwrap()).unwrap();
            diesel::sql_query(sql).execute(&mut conn).unwrap();
        }
        Db::Postgres => {
            use diesel::{Connection, RunQueryDsl};
            let mut conn = diesel::pg::PgConnection::establish(&server.settings.database_url).unwrap();
            diesel::sql_query(sql).execute(&mut conn).unwrap();
        }
    }
    let out = verify();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains(&format!("machine: BROKEN at event {tampered}")), "{stdout}");
    assert!(stdout.contains("human: intact"), "{stdout}");
    server.stop().await;
}
on_both_databases!(audit_log_filters_pages_exports_and_detects_tampering);

async fn certificates_openapi_and_metrics(db: Db) {
    let Some(server) = TestServer::start(db).await else { return };
    let acct = account(&server, Track::Machine).await;
    let (chain, _) = issue(&server, &acct, &["www.example.test"], None).await;
    let serial = serial_of(&chain);
    let auditor = token(&server, Role::Auditor);
    let search = |q: &'static str| {
        let (server, auditor) = (&server, auditor.clone());
        async move {
            let (status, body, _) = get(server, &format!("/admin/api/machine/certificates?{q}"), Some(&auditor)).await;
            assert_eq!(status, 200, "{body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            v["certificates"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["serial"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert!(search("identifier=www.example.test").await.contains(&serial));
    assert!(!search("identifier=nothing-like-it").await.contains(&serial));
    assert!(search("status=valid&expiring_within=2d").await.contains(&serial));
    assert!(!search("expiring_within=1h").await.contains(&serial));
    assert!(search("status=revoked").await.is_empty());
    let (status, _, _) = get(&server, "/admin/api/machine/certificates?status=bogus", Some(&auditor)).await;
    assert_eq!(status, 400);
    let (_, body, _) = get(&server, &format!("/admin/api/machine/certificates/{serial}"), Some(&auditor)).await;
    let detail: Value = serde_json::from_str(&body).unwrap();
    assert!(detail["pem"].as_str().unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(detail["history"][0]["action"], "certificate.issued");
    assert_eq!(get(&server, "/admin/api/machine/certificates/00ff", Some(&auditor)).await.0, 404);
    assert_eq!(
        get(&server, &format!("/admin/api/human/certificates/{serial}"), Some(&auditor)).await.0,
        404,
        "tracks do not mix"
    );

    // The OpenAPI document lists exactly the routes, and every route is served.
    let (status, body, _) = get(&server, "/admin/api/openapi.json", None).await;
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&body).unwrap();
    let mut documented: Vec<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, ops)| ops.as_object().unwrap().keys().map(move |m| (m.to_ascii_uppercase(), p.clone())))
        .collect();
    documented.sort();
    let mut routes: Vec<(String, String)> =
        dualca_admin::api::ROUTES.iter().map(|r| (r.method.to_string(), r.path.to_string())).collect();
    routes.sort();
    assert_eq!(documented, routes);
    let admin = token(&server, Role::Admin);
    // Every documented route is served: no fallback 404 (type about:blank) and no 405. Unknown
    // serials and names give the API's own notFound.
    for (method, path) in &routes {
        let concrete = path
            .replace("{track}", "machine")
            .replace("{serial}", "00ff")
            .replace("{name}", "no-such-asset")
            .replace("{kid}", "eab-nothing")
            .replace("{email}", "nobody@example.test")
            .replace("{id}", "no-such-recovery");
        let res = server
            .http()
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}{concrete}", server.public_url),
            )
            .bearer_auth(&admin)
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let body = res.text().await.unwrap();
        assert_ne!(status, 405, "{method} {concrete}");
        assert!(!body.contains("about:blank"), "{method} {concrete} is not routed: {body}");
    }

    let (status, metrics, _) = get(&server, "/metrics", None).await;
    assert_eq!(status, 200);
    assert!(metrics.contains("dualca_certificates{state=\"active\",track=\"machine\"}"), "{metrics}");
    assert!(metrics.contains("dualca_acme_request_duration_seconds_bucket"), "{metrics}");
    assert!(metrics.contains("dualca_issuances_total"), "{metrics}");
    // Group commit is SQLite's; there, the issuances above committed and synced the log. (The
    // registry is the process's, shared by the tests' servers, so only the sign is checked.)
    if db == Db::Sqlite {
        let counter =
            |name: &str| metrics.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<u64>().ok());
        let commits = counter("dualca_sqlite_commits_total").expect("commits counted");
        let syncs = counter("dualca_sqlite_log_syncs_total").expect("log syncs counted");
        assert!(commits > 0 && syncs > 0, "{commits} commits, {syncs} syncs");
        // Checkpoints come from a thread on its own clock, so only that it is exported.
        assert!(counter("dualca_sqlite_checkpoints_total").is_some(), "checkpoints exported: {metrics}");
    }
    server.stop().await;
}
on_both_databases!(certificates_openapi_and_metrics);

/// With `[admin] listen` set, the admin API, pages and metrics answer on that listener only, and
/// ACME on the main one only; the read-only public routes (CA certificates, health) on both.
async fn an_admin_listener_of_its_own_keeps_admin_off_the_acme_listener(db: Db) {
    let Some(server) = TestServer::start_with(db, |s| s.admin.listen = "127.0.0.1:0".into()).await else { return };
    assert_ne!(server.admin_url, server.public_url);
    assert!(server.admin_url.starts_with("https://localhost:"), "{}", server.admin_url);
    let admin = token(&server, Role::Admin);
    let fetch = |base: &str, path: &str| {
        let req = server.http().get(format!("{base}{path}")).bearer_auth(&admin);
        async move {
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            (status, res.text().await.unwrap())
        }
    };
    let (acme, adm) = (server.public_url.as_str(), server.admin_url.as_str());
    for path in ["/admin/api/whoami", "/admin/", "/admin/machine", "/metrics"] {
        assert_eq!(fetch(acme, path).await.0, 404, "{path} on the ACME listener");
    }
    let (status, body) = fetch(adm, "/admin/api/whoami").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["role"], "admin");
    let (status, body) = fetch(adm, "/admin/").await;
    assert!(status == 200 && body.contains("name=\"token\""), "{status}: {body}");
    let (status, body) = fetch(adm, "/metrics").await;
    assert!(status == 200 && body.contains("dualca_outbox_backlog"), "{status}: {body}");
    assert_eq!(fetch(adm, "/acme/machine/directory").await.0, 404, "no ACME on the admin listener");
    assert_eq!(fetch(acme, "/acme/machine/directory").await.0, 200);
    for base in [acme, adm] {
        assert_eq!(fetch(base, "/healthz").await.0, 200, "{base}");
        assert_eq!(fetch(base, "/ca/root.pem").await.0, 200, "{base}");
    }
    // The admin API works there as anywhere: an operator revocation, audited.
    let acct = account(&server, Track::Machine).await;
    let (chain, _) = issue(&server, &acct, &["a.example.test"], None).await;
    let serial = serial_of(&chain);
    let (status, body) = server
        .admin_call(
            "POST",
            &format!("/admin/api/machine/certificates/{serial}/revoke"),
            &admin,
            serde_json::json!({"reason": "keyCompromise"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.ca.certificate(Track::Machine, &serial).unwrap().status.as_str(), "revoked");
    server.stop().await;
}
on_both_databases!(an_admin_listener_of_its_own_keeps_admin_off_the_acme_listener);
