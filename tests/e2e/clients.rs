//! certbot and lego, the real ACME clients, run as child processes against the machine track.
//! Each solves http-01 with its own standalone server on a loopback port, which the server's
//! validator is pointed at; the outcomes are checked in the files the clients write and in the
//! CA's own certificate rows.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use dualca_ca::Track;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use tokio::process::Command;

use crate::common::{free_loopback_port, in_ci, Db, TestServer};
use crate::on_both_databases;

/// Long enough for a slow CI machine, short enough that a client stuck on a prompt or a
/// challenge fails the test instead of hanging the suite.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

const ACCOUNT_EMAIL: &str = "ops@example.test";

/// The client's path from `env_var`, else `binary` on PATH. None means the test is skipped;
/// where the clients are required (CI, or DUALCA_REQUIRE_CLIENTS=1) a missing one fails it.
fn find_client(env_var: &str, binary: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env_var) {
        let path = PathBuf::from(path);
        // A path someone set by hand and got wrong is a mistake to report, not an absence.
        assert!(path.is_file(), "{env_var}={} does not name a file", path.display());
        return Some(path);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|dir| dir.join(binary)).find(|candidate| candidate.is_file())
    });
    if on_path.is_none() {
        let required = in_ci() || std::env::var("DUALCA_REQUIRE_CLIENTS").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "{binary} is required here (CI or DUALCA_REQUIRE_CLIENTS=1) but was not found: \
             set {env_var} or put {binary} on PATH"
        );
        eprintln!("{binary} not found (set {env_var} or put it on PATH): skipping this test");
    }
    on_path
}

/// A server whose http-01 validator connects to `challenge_port` instead of the fixture's
/// responder, because there the client under test listens.
async fn server_for_client(db: Db, challenge_port: u16) -> Option<TestServer> {
    TestServer::start_with(db, |s| s.validation.http_port = challenge_port).await
}

fn client_command(program: &Path) -> Command {
    let mut command = Command::new(program);
    // The CA listens on loopback; a proxy inherited from the environment would not reach it.
    for var in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
        command.env_remove(var);
    }
    command.env("NO_PROXY", "localhost,127.0.0.1");
    command.stdin(Stdio::null()).kill_on_drop(true);
    command
}

/// Runs one step of a client to completion, bounded by CLIENT_TIMEOUT, and fails the test with
/// the client's output if it times out or exits unsuccessfully. Output goes to files rather
/// than pipes so that a killed client still leaves what it printed.
async fn run_step(step: &str, mut command: Command, log_dir: &Path) {
    let stdout_path = log_dir.join(format!("{step}.stdout"));
    let stderr_path = log_dir.join(format!("{step}.stderr"));
    command.stdout(std::fs::File::create(&stdout_path).unwrap()).stderr(std::fs::File::create(&stderr_path).unwrap());
    let shown = format!("{:?}", command.as_std());
    let started = Instant::now();
    let mut child = command.spawn().unwrap_or_else(|e| panic!("{step}: cannot start {shown}: {e}"));
    let outcome = tokio::time::timeout(CLIENT_TIMEOUT, child.wait()).await;
    let output = || {
        format!(
            "command: {shown}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            std::fs::read_to_string(&stdout_path).unwrap_or_default(),
            std::fs::read_to_string(&stderr_path).unwrap_or_default()
        )
    };
    match outcome {
        Err(_) => {
            let _ = child.kill().await;
            panic!("{step}: no exit after {}s, killed\n{}", CLIENT_TIMEOUT.as_secs(), output());
        }
        Ok(status) => {
            let status = status.unwrap();
            assert!(status.success(), "{step}: {status}\n{}", output());
        }
    }
    // The test harness shows this only when the test fails, where an earlier step's output
    // often explains a later step's failure.
    eprintln!("{step}: done in {:.1}s\n{}", started.elapsed().as_secs_f64(), output());
}

/// The CA's serials are positive with a non-zero first byte, so the minimal big-endian bytes
/// are exactly the DER INTEGER content its rows are keyed by.
fn serial_hex(cert: &X509) -> String {
    dualca_ca::ids::hex(&cert.serial_number().to_bn().unwrap().to_vec())
}

fn status_of(server: &TestServer, cert: &X509) -> String {
    server
        .ca
        .certificate(Track::Machine, &serial_hex(cert))
        .expect("the CA has a row for the client's certificate")
        .status
        .as_str()
        .to_string()
}

/// Checks a certificate chain the client wrote, leaf first, together with the private key it
/// wrote: the leaf names exactly `name`, chains to the server's root, and matches the key.
/// Returns the leaf.
fn check_issued(server: &TestServer, chain_path: &Path, key_path: &Path, name: &str) -> X509 {
    use openssl::stack::Stack;
    use openssl::x509::store::X509StoreBuilder;
    use openssl::x509::X509StoreContext;

    let pem = std::fs::read(chain_path).unwrap_or_else(|e| panic!("{} was not written: {e}", chain_path.display()));
    let mut certs = X509::stack_from_pem(&pem).unwrap();
    assert!(
        certs.len() >= 2,
        "{}: leaf and issuing CA expected, found {} certificates",
        chain_path.display(),
        certs.len()
    );
    let leaf = certs.remove(0);

    let names: Vec<String> = leaf
        .subject_alt_names()
        .expect("the leaf has a SAN")
        .iter()
        .map(|n| match n.dnsname() {
            Some(dns) => dns.to_string(),
            None => panic!("unexpected non-DNS SAN entry {n:?}"),
        })
        .collect();
    assert_eq!(names, vec![name.to_string()]);

    let root = X509::from_pem(&std::fs::read(&server.root_pem).unwrap()).unwrap();
    let mut store = X509StoreBuilder::new().unwrap();
    store.add_cert(root).unwrap();
    let store = store.build();
    let mut untrusted = Stack::new().unwrap();
    for cert in certs {
        untrusted.push(cert).unwrap();
    }
    let mut ctx = X509StoreContext::new().unwrap();
    let verified = ctx.init(&store, &leaf, &untrusted, |c| c.verify_cert()).unwrap();
    assert!(verified, "{} does not chain to the root: {}", chain_path.display(), ctx.error());

    let key: PKey<Private> = PKey::private_key_from_pem(&std::fs::read(key_path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", key_path.display()));
    assert!(
        leaf.public_key().unwrap().public_eq(&key),
        "{} does not belong to the key in {}",
        chain_path.display(),
        key_path.display()
    );
    leaf
}

async fn certbot_obtains_renews_and_revokes(db: Db) {
    const NAME: &str = "certbot.example.test";
    let Some(certbot) = find_client("DUALCA_CERTBOT", "certbot") else {
        return;
    };
    let port = free_loopback_port();
    let Some(server) = server_for_client(db, port).await else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let live = work.path().join("config/live").join(NAME);
    let port_arg = port.to_string();
    let certbot_command = |subcommand: &str| {
        let mut command = client_command(&certbot);
        command
            .arg(subcommand)
            .arg("--config-dir")
            .arg(work.path().join("config"))
            .arg("--work-dir")
            .arg(work.path().join("work"))
            .arg("--logs-dir")
            .arg(work.path().join("logs"))
            .args(["--server", &server.directory(Track::Machine)])
            .arg("--non-interactive")
            // certbot's requests library trusts this bundle instead of the system store.
            .env("REQUESTS_CA_BUNDLE", &server.root_pem);
        command
    };
    // certbot revoke takes the certificate's path and refuses a --cert-name beside it.
    let issuing_args =
        ["--cert-name", NAME, "--standalone", "--http-01-address", "127.0.0.1", "--http-01-port", &port_arg];

    // The account is bound to the test fleet asset through EAB.
    let (kid, hmac) = server.eab();
    // base64url may begin with '-', which argparse would take for an option: pass it with '='.
    let hmac = format!("--eab-hmac-key={}", dualca_ca::ids::b64url(&hmac));
    let mut obtain = certbot_command("certonly");
    obtain.args(issuing_args).args([
        "--domain",
        NAME,
        "--agree-tos",
        "--register-unsafely-without-email",
        "--key-type",
        "ecdsa",
        "--eab-kid",
        &kid,
        &hmac,
    ]);
    run_step("certbot-certonly", obtain, work.path()).await;
    let first = check_issued(&server, &live.join("fullchain.pem"), &live.join("privkey.pem"), NAME);
    assert_eq!(status_of(&server, &first), "valid");

    // certbot asks ARI when to renew (RFC 9773): a fresh 24-hour certificate's window lies
    // hours ahead, so a plain `renew` leaves it alone, after asking the renewal-info resource.
    // (certbot 5.8 uses ARI to decide when to renew but does not send `replaces`; instant-acme
    // covers that in protocol::ari_renewal_through_replaces.)
    let mut not_due = certbot_command("renew");
    not_due.args(["--no-random-sleep-on-renew"]);
    run_step("certbot-renew-not-due", not_due, work.path()).await;
    let unchanged = check_issued(&server, &live.join("fullchain.pem"), &live.join("privkey.pem"), NAME);
    assert_eq!(serial_hex(&unchanged), serial_hex(&first), "not due yet by ARI");
    let metrics =
        server.http().get(format!("{}/metrics", server.public_url)).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("dualca_acme_request_duration_seconds_count")
            && l.contains("renewal-info")
            && l.contains("status=\"200\"")),
        "certbot fetched renewalInfo: {metrics}"
    );
    let mut renew = certbot_command("renew");
    // The random sleep is meant to spread cron-driven renewals; here it only delays the test.
    renew.args(issuing_args).args(["--force-renewal", "--no-random-sleep-on-renew"]);
    run_step("certbot-renew", renew, work.path()).await;
    let renewed = check_issued(&server, &live.join("fullchain.pem"), &live.join("privkey.pem"), NAME);
    assert_ne!(serial_hex(&renewed), serial_hex(&first), "renewal wrote a new certificate");
    assert_eq!(status_of(&server, &renewed), "valid");

    // A name that belongs to another asset is refused with rejectedIdentifier.
    register_foreign_asset(&server);
    let mut foreign = certbot_command("certonly");
    foreign.args([
        "--cert-name",
        "foreign",
        "--standalone",
        "--http-01-address",
        "127.0.0.1",
        "--http-01-port",
        &port_arg,
    ]);
    foreign.args(["--domain", FOREIGN, "--key-type", "ecdsa"]);
    let output = run_failing_step("certbot-foreign", foreign).await;
    // certbot prints the detail; its debug log has the whole problem document.
    let log = std::fs::read_to_string(work.path().join("logs").join("letsencrypt.log")).unwrap_or_default();
    assert!(log.contains("urn:ietf:params:acme:error:rejectedIdentifier"), "{log}");
    assert!(output.contains(FOREIGN), "{output}");

    let mut revoke = certbot_command("revoke");
    revoke.arg("--cert-path").arg(live.join("cert.pem")).args(["--reason", "superseded", "--no-delete-after-revoke"]);
    run_step("certbot-revoke", revoke, work.path()).await;
    let record = server.ca.certificate(Track::Machine, &serial_hex(&renewed)).unwrap();
    assert_eq!(record.status.as_str(), "revoked");
    assert_eq!(record.revocation_reason, Some(4), "superseded");
    assert_eq!(status_of(&server, &first), "valid", "only the certificate named was revoked");
    server.stop().await;
}
on_both_databases!(certbot_obtains_renews_and_revokes);

async fn lego_obtains_renews_and_revokes(db: Db) {
    const NAME: &str = "lego.example.test";
    let Some(lego) = find_client("DUALCA_LEGO", "lego") else {
        return;
    };
    let port = free_loopback_port();
    let Some(server) = server_for_client(db, port).await else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("lego");
    let certificates = store.join("certificates");
    let chain_path = certificates.join(format!("{NAME}.crt"));
    let key_path = certificates.join(format!("{NAME}.key"));
    let listen = format!("127.0.0.1:{port}");
    let (eab_kid, eab_hmac) = server.eab();
    let eab_hmac = dualca_ca::ids::b64url(&eab_hmac);
    let lego_command = |subcommand: &[&str]| {
        let mut command = client_command(&lego);
        command
            .args(["--server", &server.directory(Track::Machine)])
            .args(["--email", ACCOUNT_EMAIL, "--accept-tos"])
            .args(["--eab", "--kid", &eab_kid, &format!("--hmac={eab_hmac}")])
            .arg("--path")
            .arg(&store)
            .args(["--http", "--http.port", &listen, "--domains", NAME])
            .args(subcommand)
            // lego trusts these roots instead of the system store.
            .env("LEGO_CA_CERTIFICATES", &server.root_pem);
        command
    };

    run_step("lego-run", lego_command(&["run"]), work.path()).await;
    // A name of another asset is refused, and lego reports the problem type.
    register_foreign_asset(&server);
    let mut foreign = client_command(&lego);
    foreign
        .args(["--server", &server.directory(Track::Machine)])
        .args(["--email", ACCOUNT_EMAIL, "--accept-tos"])
        .args(["--eab", "--kid", &eab_kid, &format!("--hmac={eab_hmac}")])
        .arg("--path")
        .arg(work.path().join("lego-foreign"))
        .args(["--http", "--http.port", &listen, "--domains", FOREIGN, "run"])
        .env("LEGO_CA_CERTIFICATES", &server.root_pem);
    let output = run_failing_step("lego-foreign", foreign).await;
    assert!(output.contains("rejectedIdentifier") && output.contains(FOREIGN), "{output}");
    let first = check_issued(&server, &chain_path, &key_path, NAME);
    assert_eq!(status_of(&server, &first), "valid");

    // Machine certificates last 24 h, so any renewal window of a day or more is already open.
    // The random sleep is meant to spread cron-driven renewals; here it only delays the test.
    let renew = lego_command(&["renew", "--days", "90", "--no-random-sleep"]);
    run_step("lego-renew", renew, work.path()).await;
    let renewed = check_issued(&server, &chain_path, &key_path, NAME);
    assert_ne!(serial_hex(&renewed), serial_hex(&first), "renewal wrote a new certificate");
    assert_eq!(status_of(&server, &renewed), "valid");

    let revoke = lego_command(&["revoke", "--reason", "5", "--keep"]);
    run_step("lego-revoke", revoke, work.path()).await;
    let record = server.ca.certificate(Track::Machine, &serial_hex(&renewed)).unwrap();
    assert_eq!(record.status.as_str(), "revoked");
    assert_eq!(record.revocation_reason, Some(5), "cessationOfOperation");
    assert_eq!(status_of(&server, &first), "valid", "only the certificate named was revoked");
    server.stop().await;
}
on_both_databases!(lego_obtains_renews_and_revokes);

/// A name held by an asset other than the test fleet.
const FOREIGN: &str = "foreign.example.org";

fn register_foreign_asset(server: &TestServer) {
    let spec = dualca_ca::model::AssetSpec {
        name: "someone-elses-host".into(),
        kind: "host".into(),
        owner_team: "other-team".into(),
        owner_email: "other@example.org".into(),
        service: "other".into(),
        environment: "test".into(),
        identifiers: vec![("dns".into(), FOREIGN.into())],
        spiffe_id: None,
        profile: None,
    };
    server.ca.register_asset(&spec, "test").unwrap();
}

/// Runs a client step that must fail; returns everything it printed, logs included.
async fn run_failing_step(label: &str, mut command: tokio::process::Command) -> String {
    command.stdin(std::process::Stdio::null()).kill_on_drop(true);
    let output = tokio::time::timeout(std::time::Duration::from_secs(120), command.output())
        .await
        .unwrap_or_else(|_| panic!("{label} timed out"))
        .expect("the client starts");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(!output.status.success(), "{label} was expected to fail: {text}");
    text
}
