//! The test fixture: a real dualca server on a loopback port, a fresh database per test
//! (SQLite in a temporary directory, or a new PostgreSQL database when
//! DUALCA_TEST_POSTGRES_URL is set), a real http-01 responder, and a raw JWS client for the
//! requests no well-behaved ACME client would send.

#![allow(dead_code)]

pub mod alpn;
pub mod dns;
pub mod human;
pub mod jws;
pub mod mail;
pub mod responder;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use actix_web::dev::ServerHandle;
use diesel::{Connection, RunQueryDsl};
use dualca::config::Settings;
use dualca::startup::App;
use dualca_ca::{Ca, Track};

pub use responder::ChallengeResponder;

/// Names the validator resolves to 127.0.0.1 through its static host map.
pub const TEST_NAMES: &[&str] = &[
    "a.example.test",
    "b.example.test",
    "www.example.test",
    "other.example.test",
    "example.test",
    "certbot.example.test",
    "lego.example.test",
    "renew.example.test",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

pub struct TestServer {
    pub handle: ServerHandle,
    pub public_url: String,
    /// Where the admin API and pages are: `public_url`, or the admin listener's own URL.
    pub admin_url: String,
    pub root_pem: PathBuf,
    pub ca: Arc<Ca>,
    pub responder: ChallengeResponder,
    pub settings: Settings,
    pub dir: Arc<tempfile::TempDir>,
    pub intake: Option<std::net::SocketAddr>,
}

/// In CI a missing tool or database is a failure, never a silent skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A fresh PostgreSQL database for one test, or None when PostgreSQL is not configured
/// outside CI.
pub fn postgres_database() -> Option<String> {
    let Ok(base) = std::env::var("DUALCA_TEST_POSTGRES_URL") else {
        assert!(!in_ci(), "CI=true but DUALCA_TEST_POSTGRES_URL is not set");
        eprintln!("DUALCA_TEST_POSTGRES_URL is not set: skipping the PostgreSQL variant");
        return None;
    };
    let name = format!("dualca_test_{}", dualca_ca::ids::hex(&dualca_ca::ids::random_bytes::<8>()));
    let mut conn = diesel::pg::PgConnection::establish(&base).expect("connect to DUALCA_TEST_POSTGRES_URL");
    diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut conn).expect("create test database");
    let (prefix, _) = base.rsplit_once('/').expect("postgres URL has a database path");
    Some(format!("{prefix}/{name}"))
}

impl TestServer {
    pub async fn start(db: Db) -> Option<TestServer> {
        Self::start_with(db, |_| {}).await
    }

    pub async fn start_with(db: Db, adjust: impl FnOnce(&mut Settings)) -> Option<TestServer> {
        let dir = Arc::new(tempfile::tempdir().expect("temporary directory"));
        let responder = ChallengeResponder::start().await;
        let mut settings = Settings {
            data_dir: dir.path().join("data"),
            listen: "127.0.0.1:0".parse().unwrap(),
            database_max_connections: 8,
            ..Settings::default()
        };
        settings.validation.http_port = responder.http_port;
        settings.validation.tls_port = responder.http_port;
        settings.validation.timeout = "5s".into();
        settings.validation.hosts = TEST_NAMES
            .iter()
            .map(|n| (n.to_string(), "127.0.0.1".parse::<IpAddr>().unwrap()))
            .collect::<BTreeMap<_, _>>();
        settings.email_reply.listen = "127.0.0.1:0".into();
        settings.email_reply.trusted_authserv_ids = vec![human::TRUSTED_RELAY.into()];
        if db == Db::Postgres {
            settings.database_url = postgres_database()?;
        }
        adjust(&mut settings);
        Some(Self::boot(settings, dir, responder).await)
    }

    /// Starts a server on existing settings and data (a restart).
    pub async fn boot(settings: Settings, dir: Arc<tempfile::TempDir>, responder: ChallengeResponder) -> TestServer {
        let app = App::build(settings.clone()).await.expect("server starts");
        let handle = app.handle();
        let public_url = app.public_url.clone();
        let root_pem = app.root_ca_path.clone();
        let ca = app.ca.clone();
        let intake = app.intake_addr;
        let admin_url = app.admin_url.clone().unwrap_or_else(|| public_url.clone());
        actix_web::rt::spawn(app.run());
        TestServer { handle, public_url, admin_url, root_pem, ca, responder, settings, dir, intake }
    }

    /// The SMTP intake's address (RFC 8823 replies).
    pub fn intake_addr(&self) -> std::net::SocketAddr {
        self.intake.expect("this server runs the SMTP intake")
    }

    pub fn directory(&self, track: Track) -> String {
        format!("{}/acme/{track}/directory", self.public_url)
    }

    pub fn url(&self, track: Track, path: &str) -> String {
        format!("{}/acme/{track}/{path}", self.public_url)
    }

    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }

    /// Fresh EAB credentials (kid, HMAC key) for the shared test asset, which holds every
    /// name in TEST_NAMES, `*.example.test` and both loopback addresses. Machine-track
    /// accounts need them.
    pub fn eab(&self) -> (String, Vec<u8>) {
        const FLEET: &str = "test-fleet";
        if self.ca.asset(FLEET).is_err() {
            let mut identifiers: Vec<(String, String)> =
                TEST_NAMES.iter().map(|n| ("dns".to_string(), n.to_string())).collect();
            identifiers.push(("dns".into(), "*.example.test".into()));
            // Held by the asset but in no host map: its lookups go to DNS and fail.
            identifiers.push(("dns".into(), "unresolvable.example.test".into()));
            identifiers.push(("ip".into(), "127.0.0.1".into()));
            identifiers.push(("ip".into(), "::1".into()));
            let spec = dualca_ca::model::AssetSpec {
                name: FLEET.into(),
                kind: "host".into(),
                owner_team: "test-team".into(),
                owner_email: "team@example.test".into(),
                service: "tests".into(),
                environment: "test".into(),
                identifiers,
                spiffe_id: None,
                profile: None,
            };
            self.ca.register_asset(&spec, "test").expect("register the test fleet");
        }
        let creds = self.ca.create_asset_eab(FLEET, 3600, false, "test").expect("EAB credentials");
        (
            creds.kid,
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, creds.hmac_key_b64).unwrap(),
        )
    }

    /// An HTTPS client that trusts this CA's root, for plain requests.
    pub fn http(&self) -> reqwest::Client {
        let root = std::fs::read(&self.root_pem).unwrap();
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&root).unwrap())
            .no_proxy()
            .build()
            .unwrap()
    }
}

/// For tests that use the human track only as a second, separate directory for host names
/// (track isolation, OCSP and CRLs of both issuers): it takes dns and ip identifiers and
/// accounts without EAB there, as `[human] identifier_types` and `external_account_required`
/// allow. The human track's own rules are tested with its defaults.
pub fn open_human_track(settings: &mut Settings) {
    settings.human.identifier_types = Some(vec!["dns".into(), "ip".into(), "email".into()]);
    settings.human.external_account_required = Some(false);
}

/// Runs one async test body on SQLite and, when configured, on PostgreSQL.
#[macro_export]
macro_rules! on_both_databases {
    ($name:ident) => {
        mod $name {
            #[actix_web::test]
            async fn sqlite() {
                super::$name($crate::common::Db::Sqlite).await;
            }
            #[actix_web::test]
            async fn postgres() {
                super::$name($crate::common::Db::Postgres).await;
            }
        }
    };
}

/// A CSR for `names` (DNS or IP) under a new P-256 key; returns the DER and the key.
pub fn csr(names: &[&str]) -> (Vec<u8>, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let der = params.serialize_request(&key).unwrap().der().to_vec();
    (der, key)
}

/// A CSR built with OpenSSL, for keys and shapes rcgen will not make.
pub fn openssl_csr(key: &openssl::pkey::PKey<openssl::pkey::Private>, names: &[&str]) -> Vec<u8> {
    use openssl::stack::Stack;
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::X509ReqBuilder;
    let mut builder = X509ReqBuilder::new().unwrap();
    builder.set_pubkey(key).unwrap();
    let mut san = SubjectAlternativeName::new();
    for name in names {
        if name.parse::<IpAddr>().is_ok() {
            san.ip(name);
        } else {
            san.dns(name);
        }
    }
    let ctx = builder.x509v3_context(None);
    let ext = san.build(&ctx).unwrap();
    let mut stack = Stack::new().unwrap();
    stack.push(ext).unwrap();
    builder.add_extensions(&stack).unwrap();
    builder.sign(key, openssl::hash::MessageDigest::sha256()).unwrap();
    builder.build().to_der().unwrap()
}

/// Parses the first certificate of a PEM chain.
pub fn first_cert(pem: &str) -> openssl::x509::X509 {
    openssl::x509::X509::stack_from_pem(pem.as_bytes()).unwrap().remove(0)
}

/// The leaf's serial as the CA's rows key it: positive, with a non-zero first byte, so its
/// minimal big-endian bytes in hex.
pub fn serial_of(chain: &str) -> String {
    dualca_ca::ids::hex(&first_cert(chain).serial_number().to_bn().unwrap().to_vec())
}

impl TestServer {
    /// A Bearer token for the admin API, minted with the server's own admin key.
    pub fn admin_token(&self, role: dualca_admin::Role) -> String {
        self.settings.admin_auth().unwrap().mint(role, "e2e-tests", 3600, self.ca.clock.unix()).unwrap().0
    }

    /// Runs the `dualca` command line on this server's data directory and database, as the
    /// operator `user` (the CLI's actor is `operator:$USER`), with the server's public URL, from
    /// which commands that mail a link build it. Returns whether it succeeded, its stdout and
    /// its stderr.
    pub fn cli(&self, user: &str, args: &[&str]) -> (bool, String, String) {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_dualca"));
        cmd.arg("--data-dir").arg(&self.settings.data_dir).args(["--public-url", &self.public_url]);
        cmd.env("RUST_LOG", "warn").env("USER", user);
        if !self.settings.database_url.is_empty() {
            cmd.args(["--database-url", &self.settings.database_url]);
        }
        let out = cmd.args(args).output().expect("run dualca");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// One admin API request with a JSON body; the status and the JSON answer (Null if none).
    pub async fn admin_call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        self.admin_request(method, path, token, body).await
    }

    /// `admin_call` as a future that borrows nothing from the server, for a test to spawn
    /// several at once.
    pub fn admin_request(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: serde_json::Value,
    ) -> impl std::future::Future<Output = (u16, serde_json::Value)> + Send + 'static {
        let request = self
            .http()
            .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), format!("{}{path}", self.admin_url))
            .bearer_auth(token)
            .json(&body);
        async move {
            let res = request.send().await.unwrap();
            let status = res.status().as_u16();
            (status, res.json().await.unwrap_or(serde_json::Value::Null))
        }
    }
}

/// A loopback port that was free a moment ago: for a server or client a test starts itself.
pub(crate) fn free_loopback_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
