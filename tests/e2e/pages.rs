//! The admin web pages: signing in with a token and the session cookie's flags, the CSRF token
//! every form needs, what each role sees and may do, escaping of everything a page echoes, the
//! audit log's filters and paging, the people pages' help-desk forms, the undelivered-mail page,
//! and a real headless Chromium driven over WebDriver through sign-in, the audit logs, an
//! asset's EAB form, its EAB key's Revoke and its Decommission buttons with their confirm
//! dialogs, a person's page, and a given-up mail's Send again button.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use dualca_admin::Role;
use dualca_ca::model::{AssetStatus, CertificateStatus, JoinerSpec, PersonStatus};
use dualca_ca::{AuditFilter, Track};
use reqwest::header::{HeaderMap, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use serde_json::json;

use crate::common::{in_ci, serial_of, Db, TestServer};
use crate::on_both_databases;
use crate::protocol::{account, issue};

fn mint(server: &TestServer, role: Role) -> (String, dualca_admin::auth::Claims) {
    mint_for(server, role, &format!("{}-pages", role.as_str()))
}

/// A token for one named operator (the two-person rule tells operators apart by subject).
fn mint_for(server: &TestServer, role: Role, subject: &str) -> (String, dualca_admin::auth::Claims) {
    server.settings.admin_auth().unwrap().mint(role, subject, 3600, server.ca.clock.unix()).unwrap()
}

/// HTTPS to the server, trusting its root, without following redirects (the tests look at them).
fn client(server: &TestServer) -> reqwest::Client {
    let root = std::fs::read(&server.root_pem).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&root).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
}

/// The Set-Cookie line for `name`, if the response set it.
fn set_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

fn cookie_value(line: &str) -> String {
    line.split(';').next().unwrap().split_once('=').unwrap().1.to_string()
}

/// The value of the first hidden `csrf` field on a page.
fn csrf_field(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).unwrap_or_else(|| panic!("no CSRF field in {html}")) + marker.len();
    html[start..].split('"').next().unwrap().to_string()
}

struct Response {
    status: u16,
    headers: HeaderMap,
    body: String,
}

async fn send(req: reqwest::RequestBuilder) -> Response {
    let res = req.send().await.unwrap();
    let (status, headers) = (res.status().as_u16(), res.headers().clone());
    Response { status, headers, body: res.text().await.unwrap() }
}

/// A signed-in browser, as far as HTTP goes: the session cookie and the page's CSRF token.
struct Session {
    http: reqwest::Client,
    base: String,
    cookie: String,
    csrf: String,
}

impl Session {
    async fn get(&self, path: &str) -> Response {
        send(self.http.get(format!("{}{path}", self.base)).header(COOKIE, format!("dualca_admin={}", self.cookie)))
            .await
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Response {
        send(
            self.http
                .post(format!("{}{path}", self.base))
                .header(COOKIE, format!("dualca_admin={}", self.cookie))
                .form(form),
        )
        .await
    }
}

/// Fetches the sign-in form, then posts `token` with the form's CSRF value and cookie.
async fn post_login(server: &TestServer, token: &str) -> Response {
    let http = client(server);
    let form = send(http.get(format!("{}/admin/", server.public_url))).await;
    assert_eq!(form.status, 200, "{}", form.body);
    let nonce = cookie_value(&set_cookie(&form.headers, "dualca_admin_login").expect("the form sets its cookie"));
    let csrf = csrf_field(&form.body);
    send(
        http.post(format!("{}/admin/login", server.public_url))
            .header(COOKIE, format!("dualca_admin_login={nonce}"))
            .form(&[("token", token), ("csrf", &csrf)]),
    )
    .await
}

async fn sign_in_with(server: &TestServer, token: &str) -> Session {
    let res = post_login(server, token).await;
    assert_eq!(res.status, 303, "{}", res.body);
    let cookie = cookie_value(&set_cookie(&res.headers, "dualca_admin").expect("session cookie"));
    let mut session = Session { http: client(server), base: server.public_url.clone(), cookie, csrf: String::new() };
    let page = session.get(res.headers[LOCATION].to_str().unwrap()).await;
    assert_eq!(page.status, 200, "{}", page.body);
    session.csrf = csrf_field(&page.body);
    session
}

async fn sign_in(server: &TestServer, role: Role) -> Session {
    sign_in_with(server, &mint(server, role).0).await
}

async fn api_post(server: &TestServer, path: &str, body: serde_json::Value) -> (u16, String) {
    let token = mint(server, Role::Admin).0;
    let res =
        server.http().post(format!("{}{path}", server.public_url)).bearer_auth(token).json(&body).send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

fn actions(server: &TestServer, track: Track, action: &str) -> Vec<dualca_ca::AuditRecord> {
    let filter = AuditFilter { action: Some(action.into()), ..AuditFilter::default() };
    server.ca.audit_events(track, &filter, 0, 1000).unwrap()
}

/// Registers an active host asset holding one DNS name, through the admin API.
async fn register_asset(server: &TestServer, name: &str, dns: &str) {
    let (status, body) = api_post(
        server,
        "/admin/api/machine/assets",
        json!({"name": name, "kind": "host", "owner_team": "ops", "owner_email": "ops@example.test",
               "service": "web", "environment": "test", "identifiers": [{"type": "dns", "value": dns}]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

async fn sign_in_sets_a_strict_session_cookie(db: Db) {
    let Some(server) = TestServer::start(db).await else { return };
    let http = client(&server);

    let form = send(http.get(format!("{}/admin/", server.public_url))).await;
    assert_eq!(form.status, 200);
    assert_eq!(form.headers[CONTENT_TYPE], "text/html; charset=utf-8");
    let csp = form.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'none'") && !csp.contains("unsafe-inline"), "{csp}");
    assert!(form.body.contains("name=\"token\""), "{}", form.body);

    // The sign-in form is a form like any other: without its cookie and field it is refused.
    let forged = send(
        http.post(format!("{}/admin/login", server.public_url))
            .form(&[("token", mint(&server, Role::Admin).0.as_str()), ("csrf", "guess")]),
    )
    .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert!(set_cookie(&forged.headers, "dualca_admin").is_none());

    let refused = post_login(&server, "not-a-token").await;
    assert_eq!(refused.status, 401);
    assert!(refused.body.contains("The token was not accepted"), "{}", refused.body);
    assert!(set_cookie(&refused.headers, "dualca_admin").is_none());

    let (revoked, claims) = mint(&server, Role::Admin);
    server.ca.revoke_admin_token(&claims.jti, &claims.sub, claims.exp, "test").unwrap();
    let refused = post_login(&server, &revoked).await;
    assert_eq!(refused.status, 401);
    assert!(refused.body.contains("revoked"), "{}", refused.body);

    let (token, claims) = mint(&server, Role::Admin);
    let accepted = post_login(&server, &token).await;
    assert_eq!(accepted.status, 303, "{}", accepted.body);
    assert_eq!(accepted.headers[LOCATION], "/admin/machine");
    let line = set_cookie(&accepted.headers, "dualca_admin").unwrap();
    let attributes: Vec<&str> = line.split(';').map(str::trim).collect();
    assert_eq!(attributes[0], format!("dualca_admin={token}"));
    for flag in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/admin"] {
        assert!(attributes.contains(&flag), "{flag} missing from {line}");
    }
    let max_age: i64 = attributes.iter().find_map(|a| a.strip_prefix("Max-Age=")).unwrap().parse().unwrap();
    assert!((3590..=3600).contains(&max_age), "the cookie lives as long as the token: {line}");
    // The one-off sign-in cookie is cleared.
    assert!(set_cookie(&accepted.headers, "dualca_admin_login").unwrap().contains("Max-Age=0"));

    // A help-desk operator lands on the human track, the one they may see.
    assert_eq!(post_login(&server, &mint(&server, Role::Helpdesk).0).await.headers[LOCATION], "/admin/human");

    let session =
        Session { http: http.clone(), base: server.public_url.clone(), cookie: token.clone(), csrf: String::new() };
    let dashboard = session.get("/admin/machine").await;
    assert_eq!(dashboard.status, 200, "{}", dashboard.body);
    assert!(dashboard.body.contains("id=\"active\""), "{}", dashboard.body);
    assert!(dashboard.body.contains("signed in as admin-pages (admin)"), "{}", dashboard.body);

    // Pages read only the cookie, the API only the Authorization header.
    let anonymous = send(http.get(format!("{}/admin/machine", server.public_url))).await;
    assert_eq!((anonymous.status, anonymous.headers[LOCATION].to_str().unwrap()), (303, "/admin/"));
    let bearer = send(http.get(format!("{}/admin/machine", server.public_url)).bearer_auth(&token)).await;
    assert_eq!(bearer.status, 303);
    let api = send(
        http.get(format!("{}/admin/api/whoami", server.public_url)).header(COOKIE, format!("dualca_admin={token}")),
    )
    .await;
    assert_eq!(api.status, 401, "{}", api.body);

    // Sign-out is a form too.
    assert_eq!(session.post("/admin/logout", &[]).await.status, 403);
    let csrf = csrf_field(&dashboard.body);
    let out = session.post("/admin/logout", &[("csrf", &csrf)]).await;
    assert_eq!((out.status, out.headers[LOCATION].to_str().unwrap()), (303, "/admin/"));
    assert!(set_cookie(&out.headers, "dualca_admin").unwrap().contains("Max-Age=0"));

    // The deny-list is read on every page, not only at sign-in.
    server.ca.revoke_admin_token(&claims.jti, &claims.sub, claims.exp, "test").unwrap();
    let after = session.get("/admin/machine").await;
    assert_eq!(after.status, 303);
    assert!(set_cookie(&after.headers, "dualca_admin").unwrap().contains("Max-Age=0"));
    server.stop().await;
}
on_both_databases!(sign_in_sets_a_strict_session_cookie);

async fn forms_need_the_csrf_token(db: Db) {
    let Some(server) = TestServer::start(db).await else { return };
    register_asset(&server, "csrf-target", "csrf.example.test").await;
    let session = sign_in(&server, Role::Admin).await;
    let other = sign_in(&server, Role::Admin).await;
    assert_ne!(session.csrf, other.csrf, "each token has its own CSRF value");

    let path = "/admin/machine/assets/csrf-target/decommission";
    for form in [vec![], vec![("csrf", "wrong")], vec![("csrf", other.csrf.as_str())]] {
        let res = session.post(path, &form).await;
        assert_eq!(res.status, 403, "{form:?}: {}", res.body);
        assert!(res.headers[CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
        assert!(res.body.contains("CSRF token is missing or wrong"), "{}", res.body);
    }
    assert_eq!(server.ca.asset("csrf-target").unwrap().status, AssetStatus::Active);
    let denials = actions(&server, Track::Machine, "admin.denied");
    assert_eq!(denials.len(), 3);
    assert!(denials[0].details["attempted"].as_str().unwrap().contains("CSRF"), "{:?}", denials[0].details);

    let done = session.post(path, &[("csrf", &session.csrf)]).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.headers[LOCATION], "/admin/machine/assets/csrf-target?decommissioned=0");
    assert_eq!(server.ca.asset("csrf-target").unwrap().status, AssetStatus::Decommissioned);
    let audited = actions(&server, Track::Machine, "asset.decommissioned");
    assert_eq!(audited[0].actor, "admin:admin-pages");
    let page = session.get(done.headers[LOCATION].to_str().unwrap()).await;
    assert!(page.body.contains("id=\"notice\""), "{}", page.body);
    assert!(!page.body.contains("id=\"decommission\""), "no button once decommissioned");

    // The Revoke button's form, on the human track.
    let eab = crate::common::human::enrolled_person(&server, "bo@example.test", "E-9", false).await;
    let human = crate::common::human::human_account(&server, eab).await;
    let (chain, _, _) =
        crate::common::human::issue_person_certificate(&server, &human, "bo@example.test", "smime").await;
    let serial = serial_of(&chain);
    let revoke = format!("/admin/human/certificates/{serial}/revoke");
    assert_eq!(session.post(&revoke, &[("reason", "superseded")]).await.status, 403);
    assert_eq!(server.ca.certificate(Track::Human, &serial).unwrap().status, CertificateStatus::Valid);
    let revoked = session.post(&revoke, &[("reason", "superseded"), ("csrf", &session.csrf)]).await;
    assert_eq!(revoked.status, 303, "{}", revoked.body);
    let cert = server.ca.certificate(Track::Human, &serial).unwrap();
    assert_eq!((cert.status, cert.revocation_reason), (CertificateStatus::Revoked, Some(4)));
    server.stop().await;
}
on_both_databases!(forms_need_the_csrf_token);

async fn each_role_sees_only_what_it_may(db: Db) {
    let Some(server) = TestServer::start(db).await else { return };
    let machine = account(&server, Track::Machine).await;
    let (chain, _) = issue(&server, &machine, &["a.example.test"], None).await;
    let serial = serial_of(&chain);
    let cert_page = format!("/admin/machine/certificates/{serial}");
    server.ca.person_joins(&joiner("cy@example.test", "Cy", "E-3001"), "test").unwrap();
    let person_page = "/admin/human/people/cy%40example.test";
    // (path, roles that may open it), written out rather than derived from Role::may.
    let pages: Vec<(String, &[Role])> = vec![
        ("/admin/machine".into(), &[Role::Admin, Role::Inventory, Role::Auditor]),
        ("/admin/human".into(), &[Role::Admin, Role::Helpdesk, Role::Auditor]),
        ("/admin/machine/audit".into(), &[Role::Admin, Role::Auditor]),
        ("/admin/human/audit".into(), &[Role::Admin, Role::Auditor]),
        ("/admin/machine/assets".into(), &[Role::Admin, Role::Inventory, Role::Auditor]),
        ("/admin/machine/assets/test-fleet".into(), &[Role::Admin, Role::Inventory, Role::Auditor]),
        (cert_page.clone(), &[Role::Admin, Role::Inventory, Role::Auditor]),
        ("/admin/human/people".into(), &[Role::Admin, Role::Helpdesk, Role::Auditor]),
        (person_page.into(), &[Role::Admin, Role::Helpdesk, Role::Auditor]),
    ];
    for role in Role::ALL {
        let session = sign_in(&server, role).await;
        for (path, allowed) in &pages {
            let res = session.get(path).await;
            let expected = if allowed.contains(&role) { 200 } else { 403 };
            assert_eq!(res.status, expected, "{} {path}: {}", role.as_str(), res.body);
            assert!(res.headers[CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
            if res.status == 403 {
                assert!(res.body.contains(&format!("Your role ({}) may not", role.as_str())), "{}", res.body);
            }
        }
        let buttons = |page: &Response, id: &str| page.status == 200 && page.body.contains(&format!("id=\"{id}\""));
        let asset = session.get("/admin/machine/assets/test-fleet").await;
        assert_eq!(buttons(&asset, "decommission"), matches!(role, Role::Admin | Role::Inventory), "{}", role.as_str());
        let cert = session.get(&cert_page).await;
        assert_eq!(buttons(&cert, "revoke"), role == Role::Admin, "{}", role.as_str());
        let people = session.get("/admin/human/people").await;
        let manages_people = matches!(role, Role::Admin | Role::Helpdesk);
        assert_eq!(buttons(&people, "register-joiner"), manages_people, "{}", role.as_str());
        let person = session.get(person_page).await;
        assert_eq!(buttons(&person, "record-leaver"), manages_people, "{}", role.as_str());
        assert_eq!(buttons(&person, "record-move"), manages_people, "{}", role.as_str());
        assert_eq!(buttons(&person, "no-recovery"), manages_people, "{}", role.as_str());
        assert_eq!(buttons(&person, "no-recoveries"), person.status == 200, "{}", role.as_str());
        let dashboard = session.get("/admin/machine").await;
        assert_eq!(
            dashboard.body.contains("href=\"/admin/machine/audit\""),
            matches!(role, Role::Admin | Role::Auditor),
            "{}",
            role.as_str()
        );
    }
    // Refusals are audited on the track they concern, as the API's are.
    let denied = actions(&server, Track::Machine, "admin.denied");
    assert!(
        denied.iter().any(|e| e.actor == "admin:helpdesk-pages" && e.details["attempted"] == "list assets"),
        "{denied:?}"
    );

    let denied = actions(&server, Track::Human, "admin.denied");
    assert!(
        denied.iter().any(|e| e.actor == "admin:inventory-pages" && e.details["attempted"] == "list people"),
        "{denied:?}"
    );

    // An auditor with a good CSRF token is still refused the action, and it is audited.
    let auditor = sign_in(&server, Role::Auditor).await;
    let res = auditor.post("/admin/machine/assets/test-fleet/decommission", &[("csrf", &auditor.csrf)]).await;
    assert_eq!(res.status, 403, "{}", res.body);
    assert_eq!(server.ca.asset("test-fleet").unwrap().status, AssetStatus::Active);
    let denied = actions(&server, Track::Machine, "admin.denied");
    assert_eq!(denied.last().unwrap().details["attempted"], "decommission assets");
    let res = auditor.post(&format!("{person_page}/leaver"), &[("csrf", &auditor.csrf)]).await;
    assert_eq!(res.status, 403, "{}", res.body);
    assert_eq!(server.ca.person("cy@example.test").unwrap().status, PersonStatus::Invited);
    let denied = actions(&server, Track::Human, "admin.denied");
    assert_eq!(denied.last().unwrap().details["attempted"], "record leavers");
    server.stop().await;
}
on_both_databases!(each_role_sees_only_what_it_may);

async fn everything_a_page_echoes_is_escaped(db: Db) {
    let Some(server) = TestServer::start(db).await else { return };
    let session = sign_in(&server, Role::Admin).await;
    let page = session
        .get("/admin/machine/audit?actor=%3Cscript%3Ealert(1)%3C%2Fscript%3E&subject=%22%3E%3Cimg%20src%3Dx%3E")
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("value=\"&lt;script&gt;alert(1)&lt;/script&gt;\""), "{}", page.body);
    assert!(page.body.contains("value=\"&quot;&gt;&lt;img src=x&gt;\""), "{}", page.body);
    assert!(!page.body.contains("<script>alert") && !page.body.contains("<img"), "{}", page.body);

    let bad = session.get("/admin/machine/audit?from=%3Cb%3Eyesterday").await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("not &quot;&lt;b&gt;yesterday&quot;"), "{}", bad.body);

    // Asset fields are free text; every page that shows them escapes them.
    let name = "<img src=x onerror=alert(3)>";
    let team = "</td><script>alert(4)</script>";
    let (status, body) = api_post(
        &server,
        "/admin/api/machine/assets",
        json!({"name": name, "kind": "host", "owner_team": team, "owner_email": "ops@example.test",
               "service": "web & \"friends\"", "environment": "test", "identifiers": [{"type": "dns", "value": "x.example.test"}]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let escaped_name = "&lt;img src=x onerror=alert(3)&gt;";
    let escaped_team = "&lt;/td&gt;&lt;script&gt;alert(4)&lt;/script&gt;";
    let href = "/admin/machine/assets/%3Cimg%20src%3Dx%20onerror%3Dalert%283%29%3E";
    let list = session.get("/admin/machine/assets").await;
    for expected in [escaped_name, escaped_team, "web &amp; &quot;friends&quot;", href] {
        assert!(list.body.contains(expected), "{expected} missing: {}", list.body);
    }
    let detail = session.get(href).await;
    assert_eq!(detail.status, 200, "{}", detail.body);
    assert!(detail.body.contains(&format!("<span id=\"asset-name\">{escaped_name}</span>")), "{}", detail.body);
    assert!(detail.body.contains(&format!("data-confirm=\"Decommission {escaped_name}?")), "{}", detail.body);
    let audit = session.get("/admin/machine/audit?action=asset.registered").await;
    assert!(audit.body.contains(&format!("asset:{escaped_name}")), "{}", audit.body);
    for page in [&list, &detail, &audit] {
        assert!(!page.body.contains("<img") && !page.body.contains("<script>alert"), "{}", page.body);
    }

    // So is a person's name, in the list, on their page, and in the Leaver's question.
    let spec = JoinerSpec {
        display_name: "<script>alert(5)</script> & \"Eve\"".into(),
        ..joiner("eve@example.test", "", "E-666")
    };
    server.ca.person_joins(&spec, "test").unwrap();
    let escaped = "&lt;script&gt;alert(5)&lt;/script&gt; &amp; &quot;Eve&quot;";
    let people = session.get("/admin/human/people").await;
    assert!(people.body.contains(&format!("<td class=\"name\">{escaped}</td>")), "{}", people.body);
    let person = session.get("/admin/human/people/eve%40example.test").await;
    assert_eq!(person.status, 200, "{}", person.body);
    assert!(person.body.contains(&format!("<span id=\"display-name\">{escaped}</span>")), "{}", person.body);
    assert!(
        person.body.contains(&format!("data-confirm=\"Record {escaped} &lt;eve@example.test&gt; as a leaver?")),
        "{}",
        person.body
    );
    for page in [&people, &person] {
        assert!(!page.body.contains("<script>alert"), "{}", page.body);
    }
    server.stop().await;
}
on_both_databases!(everything_a_page_echoes_is_escaped);

fn joiner(email: &str, name: &str, employee_id: &str) -> JoinerSpec {
    JoinerSpec {
        email: email.into(),
        display_name: name.into(),
        employee_id: employee_id.into(),
        manager_email: "boss@example.test".into(),
    }
}

async fn invite_for(server: &TestServer, to: &str) -> (String, String) {
    crate::common::mail::invite(server, to).await
}

async fn people_pages_register_proof_move_and_leave(db: Db) {
    let Some(server) = TestServer::start(db).await else { return };
    let session = sign_in(&server, Role::Helpdesk).await;
    let empty = session.get("/admin/human/people").await;
    assert_eq!(empty.status, 200, "{}", empty.body);
    assert!(empty.body.contains("id=\"no-people\"") && empty.body.contains("id=\"joiner\""), "{}", empty.body);

    // The joiner form, without and then with its CSRF token.
    let form = [
        ("email", "ann@example.test"),
        ("display_name", "Ann Example"),
        ("employee_id", "E-1001"),
        ("manager_email", "boss@example.test"),
    ];
    let forged = session.post("/admin/human/people", &form).await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert!(forged.body.contains("CSRF token is missing or wrong"), "{}", forged.body);
    assert!(server.ca.person("ann@example.test").is_err(), "nothing registered without the token");
    let with_csrf = |extra: &[(&'static str, &'static str)]| {
        let mut fields: Vec<(&str, &str)> =
            form.iter().copied().filter(|(k, _)| !extra.iter().any(|(e, _)| e == k)).collect();
        fields.extend_from_slice(extra);
        fields.push(("csrf", session.csrf.as_str()));
        fields
    };
    let done = session.post("/admin/human/people", &with_csrf(&[])).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.headers[LOCATION], "/admin/human/people?joined=ann%40example.test");
    let person = server.ca.person("ann@example.test").unwrap();
    assert_eq!(
        (person.status, person.proofing_level.as_str(), person.display_name.as_str()),
        (PersonStatus::Invited, "none", "Ann Example")
    );
    assert_eq!(actions(&server, Track::Human, "person.joined")[0].actor, "admin:helpdesk-pages");
    let list = session.get(done.headers[LOCATION].to_str().unwrap()).await;
    assert!(
        list.body
            .contains("id=\"notice\">Registered <a href=\"/admin/human/people/ann%40example.test\">Ann Example</a>"),
        "{}",
        list.body
    );
    assert!(list.body.contains("<td class=\"status\">invited</td><td class=\"level\">none</td>"), "{}", list.body);
    let filtered = session.get("/admin/human/people?status=active").await;
    assert!(
        filtered.body.contains("id=\"no-people\"") && filtered.body.contains("<option value=\"active\" selected>"),
        "{}",
        filtered.body
    );
    let dashboard = session.get("/admin/human").await;
    assert!(dashboard.body.contains("<span id=\"people\">1</span> people, 0 active."), "{}", dashboard.body);

    // The CA's refusals come back as the form again, with the reason: a conflict, bad input.
    let again = session.post("/admin/human/people", &with_csrf(&[("employee_id", "E-1002")])).await;
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(again.body.contains("id=\"form-error\">ann@example.test is already registered</p>"), "{}", again.body);
    assert!(again.body.contains("value=\"E-1002\""), "the form keeps what was typed: {}", again.body);
    let bad = session
        .post(
            "/admin/human/people",
            &with_csrf(&[("email", "bo@example.test"), ("employee_id", "E-1003"), ("manager_email", "nobody")]),
        )
        .await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("manager_email &quot;nobody&quot; is not an email address"), "{}", bad.body);
    assert!(server.ca.person("bo@example.test").is_err());

    // An invited person cannot be proofed by the help desk yet; the page says so.
    let page_path = "/admin/human/people/ann%40example.test";
    let page = session.get(page_path).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("id=\"no-check\"") && !page.body.contains("id=\"record-check\""), "{}", page.body);
    assert!(
        page.body.contains("<p id=\"no-recovery\">A recovery needs an active person; this one is invited.</p>"),
        "{}",
        page.body
    );
    let early = session
        .post(
            &format!("{page_path}/proof"),
            &[("method", "video"), ("evidence", "passport on video"), ("csrf", &session.csrf)],
        )
        .await;
    assert_eq!(early.status, 409, "{}", early.body);
    assert!(early.body.contains("ann@example.test is invited, not active"), "{}", early.body);

    // Ann enrolls with the link and code from her invite.
    let (link, code) = invite_for(&server, "ann@example.test").await;
    let enrolled = server.http().post(&link).form(&[("code", code.as_str())]).send().await.unwrap();
    assert_eq!(enrolled.status(), 200);
    assert_eq!(server.ca.person("ann@example.test").unwrap().proofing_level.as_str(), "email");

    // The help-desk check: a too-short evidence note is refused, a real one raises the level.
    let short = session
        .post(&format!("{page_path}/proof"), &[("method", "video"), ("evidence", "ok"), ("csrf", &session.csrf)])
        .await;
    assert_eq!(short.status, 400, "{}", short.body);
    assert!(short.body.contains("needs an evidence note"), "{}", short.body);
    assert!(short.body.contains("<option value=\"video\" selected>"), "{}", short.body);
    let evidence = "passport shown on a video call, matched the HR photo";
    let proofed = session
        .post(&format!("{page_path}/proof"), &[("method", "video"), ("evidence", evidence), ("csrf", &session.csrf)])
        .await;
    assert_eq!(proofed.status, 303, "{}", proofed.body);
    assert_eq!(proofed.headers[LOCATION], format!("{page_path}?done=proofed"));
    assert_eq!(server.ca.person("ann@example.test").unwrap().proofing_level.as_str(), "helpdesk");
    let page = session.get(proofed.headers[LOCATION].to_str().unwrap()).await;
    assert!(page.body.contains("id=\"notice\""), "{}", page.body);
    assert!(page.body.contains("<span id=\"level\">helpdesk</span>"), "{}", page.body);
    assert!(page.body.contains("<td class=\"method\">email-link</td>"), "{}", page.body);
    assert!(page.body.contains(&format!("<td class=\"method\">video</td><td class=\"details\">{evidence}</td><td class=\"operator\">admin:helpdesk-pages</td>")), "{}", page.body);

    // A mover: a new manager; an empty form is a readable refusal.
    let empty_move = session
        .post(&format!("{page_path}/move"), &[("email", ""), ("manager_email", ""), ("csrf", &session.csrf)])
        .await;
    assert_eq!(empty_move.status, 400, "{}", empty_move.body);
    let moved = session
        .post(
            &format!("{page_path}/move"),
            &[("email", ""), ("manager_email", "newboss@example.test"), ("csrf", &session.csrf)],
        )
        .await;
    assert_eq!(moved.status, 303, "{}", moved.body);
    assert_eq!(moved.headers[LOCATION], format!("{page_path}?done=moved"));
    assert_eq!(server.ca.person("ann@example.test").unwrap().manager_email, "newboss@example.test");

    // The leaver, behind its confirm dialog and the CSRF check.
    let page = session.get(page_path).await;
    assert!(
        page.body.contains("data-confirm=\"Record Ann Example &lt;ann@example.test&gt; as a leaver?"),
        "{}",
        page.body
    );
    assert_eq!(session.post(&format!("{page_path}/leaver"), &[]).await.status, 403);
    assert_eq!(server.ca.person("ann@example.test").unwrap().status, PersonStatus::Active);
    let left = session.post(&format!("{page_path}/leaver"), &[("csrf", &session.csrf)]).await;
    assert_eq!(left.status, 303, "{}", left.body);
    assert_eq!(left.headers[LOCATION], format!("{page_path}?done=left&revoked=0"));
    let person = server.ca.person("ann@example.test").unwrap();
    assert_eq!(person.status.as_str(), "left");
    assert_eq!(actions(&server, Track::Human, "person.left")[0].actor, "admin:helpdesk-pages");
    let page = session.get(left.headers[LOCATION].to_str().unwrap()).await;
    assert!(page.body.contains("id=\"notice\">Recorded as a leaver: 0 certificate(s) revoked"), "{}", page.body);
    assert!(!page.body.contains("id=\"record-leaver\"") && page.body.contains("id=\"no-actions\""), "{}", page.body);
    let twice = session.post(&format!("{page_path}/leaver"), &[("csrf", &session.csrf)]).await;
    assert_eq!(twice.status, 409, "{}", twice.body);
    assert!(twice.body.contains("ann@example.test has already left"), "{}", twice.body);
    let gone = session.get("/admin/human/people/nobody%40example.test").await;
    assert_eq!(gone.status, 404, "{}", gone.body);
    server.stop().await;
}
on_both_databases!(people_pages_register_proof_move_and_leave);

/// A person who enrolled, and, when `helpdesk`, passed a help-desk check (so that a recovery of
/// them needs two operators).
fn active_person(server: &TestServer, email: &str, name: &str, employee_id: &str, helpdesk: bool) {
    let invitation = server.ca.person_joins(&joiner(email, name, employee_id), "test").unwrap();
    let token = invitation.enrollment_url.rsplit('/').next().unwrap();
    server.ca.complete_enrollment(token, &invitation.code).unwrap();
    if helpdesk {
        server.ca.proof_by_helpdesk(email, "in-person", "badge and passport at the desk", "test").unwrap();
    }
}

async fn recovery_pages_follow_the_two_person_rule(db: Db) {
    let Some(server) = TestServer::start(db).await else { return };
    active_person(&server, "ivy@example.test", "Ivy Example", "E-5001", true);
    active_person(&server, "jo@example.test", "Jo Example", "E-5002", false);
    let (ivy, jo) = ("/admin/human/people/ivy%40example.test", "/admin/human/people/jo%40example.test");
    let alice = sign_in_with(&server, &mint_for(&server, Role::Helpdesk, "alice").0).await;
    let bob = sign_in_with(&server, &mint_for(&server, Role::Helpdesk, "bob").0).await;
    let auditor = sign_in(&server, Role::Auditor).await;
    let has = |page: &Response, id: &str| page.body.contains(&format!("id=\"{id}\""));

    // The Recover form is for those who may manage people; it says when two operators are needed.
    let page = alice.get(ivy).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(has(&page, "recover-person") && has(&page, "two-person") && has(&page, "no-recoveries"), "{}", page.body);
    assert!(page.body.contains("<option value=\"keyCompromise\">"), "{}", page.body);
    let plain = alice.get(jo).await;
    assert!(has(&plain, "recover-person") && !has(&plain, "two-person"), "{}", plain.body);
    let seen = auditor.get(ivy).await;
    assert_eq!(seen.status, 200);
    assert!(!has(&seen, "recover") && has(&seen, "no-recoveries"), "{}", seen.body);

    // The form needs its CSRF token; the CA's refusal comes back with the form as filled in.
    let fields = |evidence: &'static str| {
        vec![("reason", "superseded"), ("recovery_method", "video"), ("recovery_evidence", evidence)]
    };
    let forged = alice.post(&format!("{ivy}/recover"), &fields("passport on a video call")).await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert!(server.ca.recoveries("ivy@example.test").unwrap().is_empty());
    let short = alice.post(&format!("{ivy}/recover"), &recover_form(&alice, "ok")).await;
    assert_eq!(short.status, 400, "{}", short.body);
    assert!(short.body.contains("id=\"form-error\">a recovery needs an evidence note"), "{}", short.body);
    assert!(short.body.contains("<option value=\"superseded\" selected>"), "{}", short.body);

    // Alice asks; the page waits for another operator and offers her no approval.
    let asked = alice.post(&format!("{ivy}/recover"), &recover_form(&alice, "passport on a video call")).await;
    assert_eq!(asked.status, 303, "{}", asked.body);
    assert_eq!(asked.headers[LOCATION], format!("{ivy}?done=recovery-pending"));
    let page = alice.get(asked.headers[LOCATION].to_str().unwrap()).await;
    assert!(has(&page, "notice") && has(&page, "pending-recovery") && has(&page, "awaiting-approval"), "{}", page.body);
    assert!(
        !has(&page, "approve-recovery") && !has(&page, "recover-person") && has(&page, "cancel-recovery"),
        "{}",
        page.body
    );
    assert!(page.body.contains("<span id=\"requested-by\">admin:alice</span>"), "{}", page.body);
    let id = server.ca.recoveries("ivy@example.test").unwrap()[0].id.clone();
    // Recovery ids are base64url, so they go into the path as they are.
    let approve = format!("{ivy}/recoveries/{id}/approve");
    let own = alice.post(&approve, &[("csrf", &alice.csrf)]).await;
    assert_eq!(own.status, 403, "{}", own.body);
    assert!(own.body.contains("the two-person rule needs another operator to approve it"), "{}", own.body);
    assert!(own.body.contains("id=\"form-error\""), "the refusal is shown on the person's page: {}", own.body);

    // Bob sees the Approve button, behind its confirm dialog; the auditor sees the recovery only.
    let page = bob.get(ivy).await;
    assert!(has(&page, "approve-recovery"), "{}", page.body);
    assert!(
        page.body.contains(
            "data-confirm=\"Approve the recovery of Ivy Example &lt;ivy@example.test&gt; requested by admin:alice?"
        ),
        "{}",
        page.body
    );
    let seen = auditor.get(ivy).await;
    assert!(!has(&seen, "approve-recovery") && has(&seen, &format!("recovery-{id}")), "{}", seen.body);
    let refused = auditor.post(&approve, &[("csrf", &auditor.csrf)]).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.contains("Your role (auditor) may not approve recoveries."), "{}", refused.body);
    assert_eq!(bob.post(&approve, &[]).await.status, 403, "the approval needs its CSRF token too");
    let approved = bob.post(&approve, &[("csrf", &bob.csrf)]).await;
    assert_eq!(approved.status, 303, "{}", approved.body);
    assert_eq!(approved.headers[LOCATION], format!("{ivy}?done=recovered&revoked=0"));
    let page = bob.get(approved.headers[LOCATION].to_str().unwrap()).await;
    assert!(page.body.contains("id=\"notice\">Recovered: 0 certificate(s) revoked"), "{}", page.body);
    assert!(page.body.contains("<td class=\"status\">completed</td>"), "{}", page.body);
    assert!(page.body.contains("<td class=\"approver\">admin:bob</td>"), "{}", page.body);
    assert!(has(&page, "recover-person"), "a new recovery can be asked for: {}", page.body);
    let approvals = actions(&server, Track::Human, "person.recovery-approved");
    assert_eq!(approvals.iter().map(|e| e.actor.as_str()).collect::<Vec<_>>(), ["admin:bob"]);

    // A standard recovery from the page is carried out at once.
    let done = alice.post(&format!("{jo}/recover"), &recover_form(&alice, "badge checked at the desk")).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.headers[LOCATION], format!("{jo}?done=recovered&revoked=0"));
    let recovered = server.ca.recoveries("jo@example.test").unwrap();
    assert_eq!(recovered[0].status, dualca_ca::model::RecoveryStatus::Completed);
    assert_eq!(recovered[0].requested_by, "admin:alice");
    server.stop().await;
}
on_both_databases!(recovery_pages_follow_the_two_person_rule);

/// The Recover form as a browser posts it.
fn recover_form<'a>(session: &'a Session, evidence: &'a str) -> [(&'static str, &'a str); 4] {
    [("reason", "superseded"), ("recovery_method", "video"), ("recovery_evidence", evidence), ("csrf", &session.csrf)]
}

async fn audit_log_filters_and_pages(db: Db) {
    let Some(server) = TestServer::start(db).await else { return };
    let machine = account(&server, Track::Machine).await;
    let mut serials = Vec::new();
    for _ in 0..2 {
        serials.push(serial_of(&issue(&server, &machine, &["a.example.test"], None).await.0));
    }
    let session = sign_in(&server, Role::Auditor).await;
    let expected = actions(&server, Track::Machine, "certificate.issued");
    assert!(expected.len() >= 3, "the server's own TLS certificate and two of ours");
    // One event a page: follow "Next page" through every issuance.
    let mut path = "/admin/machine/audit?action=certificate.issued&limit=1".to_string();
    let mut seen = Vec::new();
    for _ in 0..expected.len() {
        let page = session.get(&path).await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert_eq!(page.body.matches("<td class=\"action\">").count(), 1, "{}", page.body);
        assert!(page.body.contains("<td class=\"action\">certificate.issued</td>"), "{}", page.body);
        let seq = page.body.split("<td class=\"seq\">").nth(1).unwrap().split('<').next().unwrap().to_string();
        seen.push(seq.parse::<i64>().unwrap());
        let marker = "id=\"next-page\" href=\"";
        let start = page.body.find(marker).expect("a full page has a next link") + marker.len();
        path = page.body[start..].split('"').next().unwrap().replace("&amp;", "&");
        assert!(path.ends_with(&format!("&cursor={seq}")), "{path}");
    }
    assert_eq!(seen, expected.iter().map(|e| e.seq).collect::<Vec<_>>());
    let last = session.get(&path).await;
    assert!(last.body.contains("id=\"no-events\"") && !last.body.contains("id=\"next-page\""), "{}", last.body);

    // The serial filter finds the certificate's issuance, and the subject links to its page.
    let page = session.get(&format!("/admin/machine/audit?serial={}", serials[1].to_uppercase())).await;
    assert_eq!(page.body.matches("<td class=\"action\">").count(), 1, "{}", page.body);
    assert!(page.body.contains(&format!("href=\"/admin/machine/certificates/{}\"", serials[1])), "{}", page.body);
    // The other track's chain does not hold it.
    let human = session.get(&format!("/admin/human/audit?serial={}", serials[1])).await;
    assert!(human.body.contains("id=\"no-events\""), "{}", human.body);
    server.stop().await;
}
on_both_databases!(audit_log_filters_and_pages);

/// A notification for `recipient` on the human track.
fn notice_mail(recipient: &str) -> dualca_ca::OutboundMail {
    dualca_ca::OutboundMail::notification(Track::Human, recipient, "Your certificate expires soon", &["Renew it."])
}

/// A track's undelivered-mail page: who may read it and who may send given-up mail again, the
/// CSRF token its form needs, a challenge mail's subject withheld, refusals that change
/// nothing, and the retry audited under the operator's name.
async fn undelivered_mail_page_lists_and_sends_again(db: Db) {
    // A relay nobody listens on: every attempt fails, and nothing is ever delivered.
    let relay = format!("smtp://127.0.0.1:{}", crate::common::free_loopback_port());
    let Some(server) = TestServer::start_with(db, |s| s.mail.smtp_url = relay).await else { return };
    assert!(server.ca.enqueue_mail(&notice_mail("gil@example.test")).unwrap());
    let mut challenge = notice_mail("gil@example.test");
    challenge.subject = "ACME: secret-token-half".into();
    challenge.auto_submitted = Some("auto-generated; type=acme".into());
    challenge.id = Some("challenge-mail-9".into());
    assert!(server.ca.enqueue_mail(&challenge).unwrap());
    let given_up = wait_for("a failed delivery attempt", Duration::from_secs(20), || {
        let failed =
            server.ca.undelivered_mail(10).unwrap().into_iter().find(|m| m.attempts > 0 && !m.is_challenge_mail());
        std::future::ready(failed)
    })
    .await;
    // Given up at once here, rather than after twenty failures.
    server.ca.abandon_mail(&given_up.id, "connection refused <relay down>").unwrap();
    let path = "/admin/human/mail";
    let retry = format!("{path}/{}/retry", given_up.id);

    let helpdesk = sign_in(&server, Role::Helpdesk).await;
    let dashboard = helpdesk.get("/admin/human").await;
    assert!(dashboard.body.contains("<a href=\"/admin/human/mail\">Undelivered mail</a>"), "{}", dashboard.body);
    let page = helpdesk.get(path).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let row = page.body.split(&format!("<tr id=\"mail-{}\">", given_up.id)).nth(1).expect("the given-up row");
    let row = row.split("</tr>").next().unwrap();
    for expected in [
        "gil@example.test",
        "Your certificate expires soon",
        "given up",
        "connection refused &lt;relay down&gt;",
        "class=\"retry\">Send again</button>",
    ] {
        assert!(row.contains(expected), "{expected:?} not in {row}");
    }
    assert!(page.body.contains("ACME: (a challenge mail; its subject is not shown)"), "{}", page.body);
    assert!(!page.body.contains("secret-token-half"), "{}", page.body);
    let pending = page.body.split("<tr id=\"mail-challenge-mail-9\">").nth(1).unwrap().split("</tr>").next().unwrap();
    assert!(pending.contains("next attempt") && !pending.contains("Send again"), "{pending}");

    // The auditor reads but has no button, and may not post; inventory and the help desk stay
    // off the other track's page; the help desk's own form needs its CSRF token.
    let auditor = sign_in(&server, Role::Auditor).await;
    let read = auditor.get(path).await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert!(read.body.contains("gil@example.test") && !read.body.contains("Send again"), "{}", read.body);
    assert_eq!(auditor.post(&retry, &[("csrf", &auditor.csrf)]).await.status, 403);
    let inventory = sign_in(&server, Role::Inventory).await;
    assert_eq!(inventory.get(path).await.status, 403);
    assert_eq!(helpdesk.get("/admin/machine/mail").await.status, 403);
    for form in [vec![], vec![("csrf", auditor.csrf.as_str())]] {
        let res = helpdesk.post(&retry, &form).await;
        assert_eq!(res.status, 403, "{form:?}: {}", res.body);
        assert!(res.body.contains("CSRF token is missing or wrong"), "{}", res.body);
    }
    // Mail still being tried, and mail of the other track, are refused with their pages.
    let still = helpdesk.post(&format!("{path}/challenge-mail-9/retry"), &[("csrf", &helpdesk.csrf)]).await;
    assert_eq!(still.status, 409, "{}", still.body);
    assert!(still.body.contains("still being tried"), "{}", still.body);
    let admin = sign_in(&server, Role::Admin).await;
    let elsewhere = admin.post(&format!("/admin/machine/mail/{}/retry", given_up.id), &[("csrf", &admin.csrf)]).await;
    assert_eq!(elsewhere.status, 404, "{}", elsewhere.body);
    assert!(
        elsewhere.body.contains(&format!("no unsent mail {} on the machine track", given_up.id)),
        "{}",
        elsewhere.body
    );
    assert_eq!(server.ca.outbox_given_up().unwrap(), 1, "refusals change nothing");
    assert!(actions(&server, Track::Human, "mail.retry").is_empty());

    let done = helpdesk.post(&retry, &[("csrf", &helpdesk.csrf)]).await;
    assert_eq!(done.status, 303, "{}", done.body);
    let location = done.headers[LOCATION].to_str().unwrap().to_string();
    assert_eq!(location, format!("{path}?retried={}", given_up.id));
    let after = helpdesk.get(&location).await;
    assert!(
        after.body.contains(&format!("<p class=\"notice\" id=\"notice\">Mail {} is queued again", given_up.id)),
        "{}",
        after.body
    );
    let retried = server.ca.undelivered_mail(10).unwrap().into_iter().find(|m| m.id == given_up.id).unwrap();
    assert!(!retried.given_up(), "{retried:?}");
    let audited = actions(&server, Track::Human, "mail.retry");
    assert_eq!(audited.len(), 1);
    assert_eq!(
        (audited[0].actor.as_str(), audited[0].subject.clone()),
        ("admin:helpdesk-pages", format!("mail:{}", given_up.id))
    );
    // Mail that is not given up has no second retry.
    assert_eq!(helpdesk.post(&retry, &[("csrf", &helpdesk.csrf)]).await.status, 409);
    server.stop().await;
}
on_both_databases!(undelivered_mail_page_lists_and_sends_again);

/// The text between `start` and the next `end` in `html`.
fn between<'a>(html: &'a str, start: &str, end: &str) -> &'a str {
    let from = html.find(start).unwrap_or_else(|| panic!("no {start:?} in {html}")) + start.len();
    &html[from..from + html[from..].find(end).unwrap()]
}

/// The asset page's EAB form: the inventory role makes credentials, shown once on a page sent
/// `no-store`, and an ACME client binds an account to the asset with them (once, when they are
/// single-use). Roles that may not see no form and are refused, as are a missing CSRF token
/// and a validity the form does not offer, and none of it makes a key. The page lists the
/// asset's keys with their state, and revokes a usable one (of this asset only), audited.
async fn asset_page_makes_eab_credentials(db: Db) {
    let Some(server) = TestServer::start(db).await else { return };
    register_asset(&server, "eab-target", "eab.example.test").await;
    let page_path = "/admin/machine/assets/eab-target";
    let path = format!("{page_path}/credentials");

    let inventory = sign_in(&server, Role::Inventory).await;
    let page = inventory.get(page_path).await;
    assert!(
        page.body.contains("id=\"make-eab\"") && page.body.contains("<option value=\"7d\" selected>"),
        "{}",
        page.body
    );
    let auditor = sign_in(&server, Role::Auditor).await;
    let read = auditor.get(page_path).await;
    assert!(read.status == 200 && !read.body.contains("make-eab"), "{}", read.body);
    assert_eq!(auditor.post(&path, &[("ttl", "7d"), ("csrf", &auditor.csrf)]).await.status, 403);
    assert_eq!(inventory.post(&path, &[("ttl", "7d")]).await.status, 403, "no CSRF token");
    let odd = inventory.post(&path, &[("ttl", "90d"), ("csrf", &inventory.csrf)]).await;
    assert_eq!(odd.status, 400, "{}", odd.body);
    assert!(odd.body.contains("Unknown validity"), "{}", odd.body);
    assert!(actions(&server, Track::Machine, "eab.created").is_empty(), "refusals make no key");

    let made = inventory.post(&path, &[("ttl", "1d"), ("single_use", "on"), ("csrf", &inventory.csrf)]).await;
    assert_eq!(made.status, 200, "{}", made.body);
    assert_eq!(made.headers["cache-control"], "no-store");
    let kid = between(&made.body, "<code id=\"eab-kid\">", "</code>").to_string();
    let key = between(&made.body, "<code id=\"eab-hmac\">", "</code>").to_string();
    assert!(made.body.contains(&format!("--eab-kid {kid} --eab-hmac-key={key}")), "{}", made.body);
    let created = actions(&server, Track::Machine, "eab.created");
    assert_eq!(created.len(), 1);
    assert_eq!(
        (created[0].actor.as_str(), created[0].subject.as_str(), &created[0].details["single_use"]),
        ("admin:inventory-pages", "asset:eab-target", &json!(true))
    );
    let expires = created[0].details["expires_at"].as_i64().unwrap();
    assert!((86_300..=86_400).contains(&(expires - server.ca.clock.unix())), "one day: {expires}");

    // An ACME client binds an account to the asset with them; the second use is refused.
    use base64::Engine;
    let hmac = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&key).unwrap();
    let mut client = crate::common::jws::RawClient::bare(&server, Track::Machine);
    client.eab = Some((kid.clone(), hmac.clone()));
    client.create_account().await;
    let mut again = crate::common::jws::RawClient::bare(&server, Track::Machine);
    again.eab = Some((kid, hmac));
    let url = again.url("new-account");
    let payload = json!({"termsOfServiceAgreed": true, "externalAccountBinding":
        crate::common::jws::eab_binding(&again.eab.as_ref().unwrap().0, &again.eab.as_ref().unwrap().1,
                                        &crate::common::jws::jwk_of(&again.key), &url)});
    let refused = again.post(&url, Some(&payload)).await;
    refused.assert_problem("unauthorized", 403);

    // The asset page lists its keys: the used one has no Revoke button; a new reusable one has.
    let made = inventory.post(&path, &[("ttl", "7d"), ("csrf", &inventory.csrf)]).await;
    let (second, second_key) = (
        between(&made.body, "<code id=\"eab-kid\">", "</code>").to_string(),
        between(&made.body, "<code id=\"eab-hmac\">", "</code>").to_string(),
    );
    let row = |html: &str, kid: &str| between(html, &format!("<tr id=\"eab-{kid}\">"), "</tr>").to_string();
    let listed = inventory.get(page_path).await.body;
    let used = row(&listed, &again.eab.as_ref().unwrap().0);
    assert!(used.contains("<td class=\"state\">used</td>") && !used.contains("Revoke"), "{used}");
    let usable = row(&listed, &second);
    assert!(usable.contains("<td class=\"state\">usable</td>") && usable.contains("Revoke</button>"), "{usable}");
    assert!(!auditor.get(page_path).await.body.contains("revoke-eab"), "the auditor has no Revoke button");
    let revoke = format!("{page_path}/eab/{second}/revoke");
    assert_eq!(inventory.post(&revoke, &[]).await.status, 403, "no CSRF token");
    register_asset(&server, "other-asset", "other.example.test").await;
    let elsewhere = inventory
        .post(&format!("/admin/machine/assets/other-asset/eab/{second}/revoke"), &[("csrf", &inventory.csrf)])
        .await;
    assert_eq!(elsewhere.status, 404, "a key of another asset: {}", elsewhere.body);
    assert!(actions(&server, Track::Machine, "eab.revoked").is_empty(), "refusals revoke nothing");
    let done = inventory.post(&revoke, &[("csrf", &inventory.csrf)]).await;
    assert_eq!(done.status, 303, "{}", done.body);
    let after = inventory.get(done.headers[LOCATION].to_str().unwrap()).await.body;
    assert!(after.contains(&format!("EAB key {second} is revoked.")), "{after}");
    assert!(row(&after, &second).contains("<td class=\"state\">revoked</td>"), "{after}");
    let audited = actions(&server, Track::Machine, "eab.revoked");
    assert_eq!((audited.len(), audited[0].actor.as_str()), (1, "admin:inventory-pages"));
    assert_eq!(inventory.post(&revoke, &[("csrf", &inventory.csrf)]).await.status, 409, "already revoked");
    let late = crate::common::jws::RawClient::bare(&server, Track::Machine);
    let hmac = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&second_key).unwrap();
    let url = late.url("new-account");
    let payload = json!({"termsOfServiceAgreed": true, "externalAccountBinding":
        crate::common::jws::eab_binding(&second, &hmac, &crate::common::jws::jwk_of(&late.key), &url)});
    late.post(&url, Some(&payload)).await.assert_problem("unauthorized", 403);
    server.stop().await;
}
on_both_databases!(asset_page_makes_eab_credentials);

// ---------------------------------------------------------------------------------------------
// A real browser: Debian's chromium and chromedriver, driven by fantoccini.

/// `binary` from `env_var` or PATH. None means skip; where browsers are required (CI, or
/// DUALCA_REQUIRE_CLIENTS=1) a missing one fails the test.
fn find_tool(env_var: &str, binary: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env_var) {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "{env_var}={} does not name a file", path.display());
        return Some(path);
    }
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(binary)).find(|c| c.is_file()));
    if found.is_none() {
        let required = in_ci() || std::env::var("DUALCA_REQUIRE_CLIENTS").is_ok_and(|v| v == "1");
        assert!(!required, "{binary} is required here (CI or DUALCA_REQUIRE_CLIENTS=1) but was not found");
        eprintln!("{binary} not found (set {env_var} or put it on PATH): skipping the browser test");
    }
    found
}

fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Polls `check` every 100 ms until it yields a value or `limit` passes.
async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One WebDriver command, bounded.
async fn within<T>(what: &str, fut: impl std::future::Future<Output = Result<T, fantoccini::error::CmdError>>) -> T {
    match tokio::time::timeout(Duration::from_secs(10), fut).await {
        Ok(Ok(value)) => value,
        Ok(Err(e)) => panic!("{what}: {e}"),
        Err(_) => panic!("{what}: no answer within 10s"),
    }
}

/// A Chromium profile whose NSS database trusts the test CA's root, so the browser checks the
/// server's certificate as it would any other, instead of ignoring certificate errors.
fn trusting_home(certutil: &Path, dir: &Path, root_pem: &Path) -> PathBuf {
    let home = dir.join("home");
    let nssdb = home.join(".pki").join("nssdb");
    std::fs::create_dir_all(&nssdb).unwrap();
    let db = format!("sql:{}", nssdb.display());
    let run = |args: &[&str]| {
        let out = std::process::Command::new(certutil).args(args).output().expect("run certutil");
        assert!(out.status.success(), "certutil {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["-N", "-d", &db, "--empty-password"]);
    run(&["-A", "-d", &db, "-n", "dualca-test-root", "-t", "C,,", "-i", root_pem.to_str().unwrap()]);
    home
}

struct Browser {
    client: fantoccini::Client,
    _driver: tokio::process::Child,
}

async fn start_browser(server: &TestServer, dir: &Path) -> Option<Browser> {
    let chromium = find_tool("DUALCA_CHROMIUM", "chromium")?;
    let chromedriver = find_tool("DUALCA_CHROMEDRIVER", "chromedriver")?;
    let certutil = find_tool("DUALCA_CERTUTIL", "certutil")?;
    let home = trusting_home(&certutil, dir, &server.root_pem);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let driver = tokio::process::Command::new(&chromedriver)
        .arg(format!("--port={port}"))
        .arg(format!("--log-path={}", dir.join("chromedriver.log").display()))
        .env("HOME", &home)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start chromedriver");
    let webdriver = format!("http://127.0.0.1:{port}");
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    wait_for("chromedriver to listen", Duration::from_secs(10), || {
        let req = plain.get(format!("{webdriver}/status")).timeout(Duration::from_secs(1)).send();
        async move { req.await.ok().filter(|r| r.status().is_success()) }
    })
    .await;
    let profile = dir.join("profile");
    let args = [
        "--headless".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-quic".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--disable-dev-shm-usage".into(),
        "--window-size=1280,900".into(),
        format!("--user-data-dir={}", profile.display()),
    ];
    let capabilities = json!({
        "browserName": "chrome",
        // The test answers the confirm dialog itself.
        "unhandledPromptBehavior": "ignore",
        "goog:chromeOptions": { "binary": chromium, "args": args },
    });
    let mut builder = fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
    builder.capabilities(capabilities.as_object().unwrap().clone());
    let client = match tokio::time::timeout(Duration::from_secs(30), builder.connect(&webdriver)).await {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => panic!("start a Chromium session: {e}"),
        Err(_) => panic!("Chromium did not start within 30s"),
    };
    let timeouts = fantoccini::wd::TimeoutConfiguration::new(
        Some(Duration::from_secs(5)),
        Some(Duration::from_secs(10)),
        Some(Duration::from_secs(0)),
    );
    within("set timeouts", client.update_timeouts(timeouts)).await;
    Some(Browser { client, _driver: driver })
}

async fn screenshot(client: &fantoccini::Client, name: &str) {
    let png = within("screenshot", client.screenshot()).await;
    std::fs::write(artifacts_dir().join(format!("pages-{name}.png")), png).unwrap();
}

async fn current_url(client: &fantoccini::Client) -> String {
    within("current URL", client.current_url()).await.to_string()
}

async fn wait_for_url(client: &fantoccini::Client, part: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let url = current_url(client).await;
        if url.contains(part) {
            return url;
        }
        assert!(Instant::now() < deadline, "still at {url}, expected {part}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn texts(client: &fantoccini::Client, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for element in within(css, client.find_all(fantoccini::Locator::Css(css))).await {
        out.push(within("text", element.text()).await);
    }
    out
}

async fn click(client: &fantoccini::Client, css: &str) {
    let element = within(css, client.find(fantoccini::Locator::Css(css))).await;
    within(&format!("click {css}"), element.click()).await;
}

async fn browse(server: Rc<TestServer>, client: fantoccini::Client, serials: Vec<(Track, String)>) {
    let base = &server.public_url;
    let token = mint(&server, Role::Admin).0;

    within("open sign-in", client.goto(&format!("{base}/admin/"))).await;
    // Before the token is typed: screenshots are artifacts, and a token does not belong in one.
    screenshot(&client, "sign-in").await;
    let field = within("token field", client.find(fantoccini::Locator::Id("token"))).await;
    within("type the token", field.send_keys(&token)).await;
    click(&client, "#sign-in").await;
    wait_for_url(&client, "/admin/machine").await;
    assert_eq!(texts(&client, "#active").await, vec!["1"], "one subscriber certificate on the machine track");
    screenshot(&client, "machine-dashboard").await;

    for (track, serial) in &serials {
        within("open the audit log", client.goto(&format!("{base}/admin/{track}/audit"))).await;
        let action = within("action field", client.find(fantoccini::Locator::Id("filter-action"))).await;
        within("type the action", action.send_keys("certificate.issued")).await;
        click(&client, "#apply-filter").await;
        wait_for_url(&client, "action=certificate.issued").await;
        let shown = texts(&client, "#events td.action").await;
        let expected = actions(&server, *track, "certificate.issued");
        assert_eq!(shown.len(), expected.len(), "{track}: {shown:?}");
        assert!(shown.iter().all(|a| a == "certificate.issued"), "{track}: {shown:?}");
        let subjects = texts(&client, "#events td.subject").await;
        let wanted: Vec<String> = expected.iter().map(|e| e.subject.clone()).collect();
        assert_eq!(subjects, wanted, "{track}");
        assert!(subjects.contains(&format!("certificate:{serial}")), "{track}: {subjects:?}");
        screenshot(&client, &format!("{track}-audit")).await;
    }

    within("open the assets", client.goto(&format!("{base}/admin/machine/assets"))).await;
    assert_eq!(texts(&client, "#assets td.name").await, vec!["test-fleet"]);
    screenshot(&client, "assets").await;

    let (_, machine_serial) = serials.iter().find(|(t, _)| *t == Track::Machine).unwrap();
    within("open the certificate", client.goto(&format!("{base}/admin/machine/certificates/{machine_serial}"))).await;
    assert_eq!(texts(&client, "#status").await, vec!["valid"]);
    screenshot(&client, "certificate").await;

    within("open the asset", client.goto(&format!("{base}/admin/machine/assets/test-fleet"))).await;
    assert_eq!(texts(&client, "#status").await, vec!["active"]);
    screenshot(&client, "asset").await;
    // EAB credentials from the asset's form: shown on the page the form opens, and valid.
    click(&client, "#make-eab").await;
    wait_for_url(&client, "/admin/machine/assets/test-fleet/credentials").await;
    let kid = texts(&client, "#eab-kid").await.remove(0);
    assert!(kid.starts_with("eab-"), "{kid}");
    assert_eq!(actions(&server, Track::Machine, "eab.created").last().unwrap().details["kid"], kid.as_str());
    // No screenshot of that page: it shows the key.
    within("back to the asset", client.goto(&format!("{base}/admin/machine/assets/test-fleet"))).await;
    click(&client, &format!("tr[id='eab-{kid}'] button.revoke-eab")).await;
    let question = wait_for("the confirm dialog", Duration::from_secs(5), || {
        let client = client.clone();
        async move { client.get_alert_text().await.ok() }
    })
    .await;
    assert!(question.starts_with(&format!("Revoke EAB key {kid}?")), "{question}");
    within("accept the dialog", client.accept_alert()).await;
    wait_for_url(&client, &format!("eab_revoked={kid}")).await;
    assert_eq!(texts(&client, &format!("tr[id='eab-{kid}'] td.state")).await, vec!["revoked"]);
    assert_eq!(actions(&server, Track::Machine, "eab.revoked")[0].subject, format!("eab:{kid}"));
    screenshot(&client, "asset-eab-revoked").await;
    click(&client, "#decommission").await;
    let question = wait_for("the confirm dialog", Duration::from_secs(5), || {
        let client = client.clone();
        async move { client.get_alert_text().await.ok() }
    })
    .await;
    assert!(question.starts_with("Decommission test-fleet?"), "{question}");
    within("accept the dialog", client.accept_alert()).await;
    wait_for_url(&client, "decommissioned=1").await;
    assert_eq!(texts(&client, "#status").await, vec!["decommissioned"]);
    assert_eq!(texts(&client, "#certificates td.status").await, vec!["revoked"]);
    screenshot(&client, "asset-decommissioned").await;

    let asset = server.ca.asset("test-fleet").unwrap();
    assert_eq!(asset.status, AssetStatus::Decommissioned);
    let cert = server.ca.certificate(Track::Machine, machine_serial).unwrap();
    assert_eq!(cert.status, CertificateStatus::Revoked);
    assert_eq!(actions(&server, Track::Machine, "asset.decommissioned")[0].actor, "admin:admin-pages");

    server.ca.person_joins(&joiner("dee@example.test", "Dee Example", "E-4001"), "test").unwrap();
    within("open the person", client.goto(&format!("{base}/admin/human/people/dee%40example.test"))).await;
    assert_eq!(texts(&client, "#status").await, vec!["invited"]);
    assert_eq!(texts(&client, "#no-recovery").await, vec!["A recovery needs an active person; this one is invited."]);
    screenshot(&client, "person").await;

    // Once enrolled, the help desk can recover her: the Recover form, behind its confirm dialog.
    active_person(&server, "fay@example.test", "Fay Example", "E-4002", false);
    within("open the person", client.goto(&format!("{base}/admin/human/people/fay%40example.test"))).await;
    let evidence = within("evidence field", client.find(fantoccini::Locator::Id("recovery-evidence"))).await;
    within("type the evidence", evidence.send_keys("passport shown on a video call")).await;
    click(&client, "#recover-person").await;
    let question = wait_for("the confirm dialog", Duration::from_secs(5), || {
        let client = client.clone();
        async move { client.get_alert_text().await.ok() }
    })
    .await;
    assert!(question.starts_with("Recover Fay Example <fay@example.test>?"), "{question}");
    within("accept the dialog", client.accept_alert()).await;
    wait_for_url(&client, "done=recovered").await;
    assert_eq!(texts(&client, "#recoveries td.status").await, vec!["completed"]);
    assert_eq!(texts(&client, "#recoveries td.reason").await, vec!["keyCompromise"]);
    screenshot(&client, "person-recovered").await;

    // A mail no attempt can send is given up; its Send again button queues it once more.
    assert!(server.ca.enqueue_mail(&notice_mail("not an address")).unwrap());
    let hopeless = wait_for("the mail given up", Duration::from_secs(20), || {
        std::future::ready(server.ca.undelivered_mail(10).unwrap().into_iter().find(|m| m.given_up()))
    })
    .await;
    within("open the dashboard", client.goto(&format!("{base}/admin/human"))).await;
    click(&client, "a[href='/admin/human/mail']").await;
    wait_for_url(&client, "/admin/human/mail").await;
    assert_eq!(texts(&client, "#mail td.recipient").await, vec!["not an address"]);
    assert_eq!(texts(&client, "#mail td.state").await, vec!["given up"]);
    screenshot(&client, "undelivered-mail").await;
    click(&client, &format!("tr[id='mail-{}'] button.retry", hopeless.id)).await;
    wait_for_url(&client, &format!("retried={}", hopeless.id)).await;
    // The next delivery round may already have failed again: the notice says which.
    let notice = texts(&client, "#notice").await;
    assert!(notice.len() == 1 && notice[0].starts_with(&format!("Mail {} ", hopeless.id)), "{notice:?}");
    screenshot(&client, "undelivered-mail-retried").await;
    let retried = actions(&server, Track::Human, "mail.retry");
    assert_eq!((retried.len(), retried[0].actor.as_str()), (1, "admin:admin-pages"));
}

/// SQLite only: what the browser adds is the browser, not the database.
#[actix_web::test]
async fn browser_signs_in_filters_audit_logs_and_decommissions() {
    let Some(server) = TestServer::start_with(Db::Sqlite, crate::common::open_human_track).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some(browser) = start_browser(&server, dir.path()).await else { return };
    let mut serials = Vec::new();
    for track in Track::ALL {
        let acct = account(&server, track).await;
        let (chain, _) = issue(&server, &acct, &["a.example.test"], None).await;
        serials.push((track, serial_of(&chain)));
    }
    let server = Rc::new(server);
    // Run the scenario as its own task so that a failed assertion still closes the browser.
    let outcome = tokio::task::spawn_local(browse(server.clone(), browser.client.clone(), serials)).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), browser.client.close()).await;
    if let Err(e) = outcome {
        let log = std::fs::read_to_string(dir.path().join("chromedriver.log")).unwrap_or_default();
        let tail: String =
            log.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
        eprintln!("chromedriver log (last lines):\n{tail}");
        std::panic::resume_unwind(e.into_panic());
    }
    server.stop().await;
}
