//! Durability: kill -9 the server process in the middle of a run of issuances, restart it, and
//! check that every certificate a client received is in the database and that both audit
//! chains still verify.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dualca::config::Settings;
use dualca::startup::open_ca;
use dualca_ca::audit::{verify, ChainCheck};
use dualca_ca::Track;
use instant_acme::{Account, ChallengeType, Identifier, NewAccount, NewOrder, RetryPolicy};

use crate::common::{csr, first_cert, free_loopback_port, postgres_database, ChallengeResponder, Db};
use crate::on_both_databases;

struct ServerProcess {
    child: Child,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_server(data_dir: &std::path::Path, database_url: &str, port: u16, http_port: u16) -> ServerProcess {
    std::fs::create_dir_all(data_dir.parent().unwrap()).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_dualca"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--database-url", database_url])
        .env("DUALCA_VALIDATION__HTTP_PORT", http_port.to_string())
        .env("DUALCA_EMAIL_REPLY__LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(data_dir.with_file_name("server.log")).map(Stdio::from).unwrap_or(Stdio::null()))
        .spawn()
        .expect("start the dualca binary");
    ServerProcess { child }
}

async fn wait_ready(http: &reqwest::Client, port: u16) {
    for _ in 0..200 {
        if let Ok(res) = http.get(format!("https://localhost:{port}/readyz")).send().await {
            if res.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server on port {port} did not become ready");
}

fn client_trusting(root: &std::path::Path) -> reqwest::Client {
    let pem = std::fs::read(root).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// One complete issuance for 127.0.0.1 over http-01; returns the serial in hex.
async fn issue_once(account: &Account, responder: &ChallengeResponder) -> Result<String, String> {
    let ids = [Identifier::Ip("127.0.0.1".parse().unwrap())];
    let mut order = account.new_order(&NewOrder::new(&ids)).await.map_err(|e| e.to_string())?;
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.map_err(|e| e.to_string())?;
        let mut challenge = authz.challenge(ChallengeType::Http01).ok_or("no http-01")?;
        responder.serve(&challenge.token, challenge.key_authorization().as_str());
        challenge.set_ready().await.map_err(|e| e.to_string())?;
    }
    let retry = RetryPolicy::new().initial_delay(Duration::from_millis(50)).timeout(Duration::from_secs(10));
    order.poll_ready(&retry).await.map_err(|e| e.to_string())?;
    let (der, _) = csr(&["127.0.0.1"]);
    order.finalize_csr(&der).await.map_err(|e| e.to_string())?;
    let chain = order.poll_certificate(&retry).await.map_err(|e| e.to_string())?;
    let leaf = first_cert(&chain);
    Ok(dualca_ca::ids::hex(&leaf.serial_number().to_bn().unwrap().to_vec()))
}

async fn kill_minus_nine_loses_no_certificate(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let database_url = match db {
        Db::Sqlite => data_dir.join("dualca.db").to_string_lossy().into_owned(),
        Db::Postgres => match postgres_database() {
            Some(url) => url,
            None => return,
        },
    };
    let responder = ChallengeResponder::start().await;
    let port = free_loopback_port();
    let mut server = spawn_server(&data_dir, &database_url, port, responder.http_port);
    let root = data_dir.join("ca/root.pem");
    for _ in 0..200 {
        if root.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        root.exists(),
        "the server did not start: {}",
        std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default()
    );
    let http = client_trusting(&root);
    wait_ready(&http, port).await;

    // The operator's CLI registers the asset and hands out its EAB credentials, against the
    // same data the running server uses.
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_dualca"))
            .args(args)
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--database-url", &database_url])
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    cli(&[
        "asset",
        "register",
        "--name",
        "crash-fleet",
        "--owner-team",
        "sre",
        "--owner-email",
        "sre@example.test",
        "--service",
        "load",
        "--ip",
        "127.0.0.1",
    ]);
    let creds = cli(&["asset", "credentials", "crash-fleet"]);
    let field = |name: &str| creds.lines().find_map(|l| l.strip_prefix(name)).unwrap().trim().to_string();
    let (kid, hmac) = (field("kid:"), field("hmac key:"));
    let hmac = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, hmac).unwrap();

    let directory = format!("https://localhost:{port}/acme/machine/directory");
    let received: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (directory, root, received, responder) =
            (directory.clone(), root.clone(), received.clone(), responder.clone());
        let eab = instant_acme::ExternalAccountKey::new(kid.clone(), &hmac);
        workers.push(actix_web::rt::spawn(async move {
            let new = NewAccount { contact: &[], terms_of_service_agreed: true, only_return_existing: false };
            let (account, _) =
                Account::builder_with_root(&root).unwrap().create(&new, directory, Some(&eab)).await.unwrap();
            // Bounded: at most 50 issuances per worker; the kill ends the run far earlier.
            for _ in 0..50 {
                match issue_once(&account, &responder).await {
                    Ok(serial) => received.lock().unwrap().push(serial),
                    Err(e) => {
                        eprintln!("issuance stopped: {e}");
                        return;
                    }
                }
            }
        }));
    }
    // Kill mid-run, once some certificates are out.
    for _ in 0..400 {
        if received.lock().unwrap().len() >= 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Command::new("kill").args(["-9", &server.child.id().to_string()]).status().unwrap();
    let _ = server.child.wait();
    for worker in workers {
        let _ = worker.await;
    }
    let received = received.lock().unwrap().clone();
    assert!(received.len() >= 6, "only {} certificates were issued before the kill", received.len());

    // The server restarts on the same data and issues again.
    drop(server);
    let server = spawn_server(&data_dir, &database_url, port, responder.http_port);
    wait_ready(&http, port).await;
    let new = NewAccount { contact: &[], terms_of_service_agreed: true, only_return_existing: false };
    let eab = instant_acme::ExternalAccountKey::new(kid.clone(), &hmac);
    let (account, _) = Account::builder_with_root(&root).unwrap().create(&new, directory, Some(&eab)).await.unwrap();
    let after = issue_once(&account, &responder).await.expect("issuance after restart");
    drop(server);

    let settings = Settings { data_dir: data_dir.clone(), database_url: database_url.clone(), ..Settings::default() };
    let ca = tokio::task::spawn_blocking(move || open_ca(&settings, "https://localhost")).await.unwrap().unwrap();
    for serial in received.iter().chain(std::iter::once(&after)) {
        let record =
            ca.certificate(Track::Machine, serial).unwrap_or_else(|e| panic!("certificate {serial} was lost: {e}"));
        assert_eq!(record.status.as_str(), "valid");
    }
    for track in Track::ALL {
        match verify(&ca.storage, track).unwrap() {
            ChainCheck::Intact { events } => assert!(events > 0),
            broken => panic!("{track} audit chain broken after kill -9: {broken:?}"),
        }
    }
}
on_both_databases!(kill_minus_nine_loses_no_certificate);
