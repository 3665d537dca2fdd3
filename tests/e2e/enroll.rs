//! `dualca enroll`, the binary run as a person runs it: EAB credentials from the enrollment
//! page, the challenge mail read from the CA's outbox and handed to it on standard input, the
//! reply sent through a DKIM-signing relay (tests/e2e/support/dkim_relay.py, real DKIM with
//! dkimpy; only DNS is stood in for) or printed for the person to send, and the key, chain and
//! PKCS#12 bundle it writes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use openssl::pkey::PKey;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::common::free_loopback_port;
use crate::common::human::{dkim_pass, enrolled_person, smtp_send, TRUSTED_RELAY};
use crate::common::mail::decode_quoted_printable;
use crate::common::{in_ci, Db, TestServer};
use crate::on_both_databases;

const EMAIL: &str = "bo@example.test";

/// A python that has both aiosmtpd and dkimpy (Debian's python3-aiosmtpd and python3-dkim).
pub(crate) fn relay_python() -> Option<PathBuf> {
    let python = PathBuf::from("/usr/bin/python3");
    let ok = std::process::Command::new(&python)
        .args(["-c", "import aiosmtpd, dkim"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let required = in_ci() || std::env::var("DUALCA_REQUIRE_CLIENTS").is_ok_and(|v| v == "1");
        assert!(!required, "python3-aiosmtpd and python3-dkim are required here (CI or DUALCA_REQUIRE_CLIENTS=1)");
        eprintln!("python3 with aiosmtpd and dkim not found: skipping");
        return None;
    }
    Some(python)
}

/// Starts the DKIM relay in front of the server's intake; it is killed on drop.
async fn start_relay(python: &Path, server: &TestServer, dir: &Path) -> (Child, u16) {
    let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
    let key_file = dir.join("dkim.key");
    std::fs::write(&key_file, rsa.private_key_to_pem().unwrap()).unwrap();
    let spki = PKey::from_rsa(rsa).unwrap().public_key_to_der().unwrap();
    let txt_file = dir.join("dkim.txt");
    let p = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, spki);
    std::fs::write(&txt_file, format!("v=DKIM1; k=rsa; p={p}")).unwrap();
    let port = free_loopback_port();
    let intake = server.intake_addr();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/support/dkim_relay.py");
    let mut child = Command::new(python)
        .arg(&script)
        .args([port.to_string(), intake.ip().to_string(), intake.port().to_string()])
        .arg(&key_file)
        .arg(&txt_file)
        .args(["example.test", "mail", TRUSTED_RELAY])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start the DKIM relay");
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 10];
    tokio::time::timeout(Duration::from_secs(10), stdout.read_exact(&mut first)).await.unwrap().unwrap();
    assert_eq!(&first, b"listening\n");
    // Kept open: a relay whose stdout is closed dies of SIGPIPE at its next write.
    child.stdout = Some(stdout);
    (child, port)
}

/// The .eml file of the challenge mail to `to` (bounded wait: 30 s, for a CI machine busy with
/// the other tests' browsers and ACME clients; the `dualca enroll` process has to start, make
/// its key and order first).
async fn challenge_file(server: &TestServer, to: &str) -> PathBuf {
    for _ in 0..300 {
        for entry in std::fs::read_dir(server.settings.data_dir.join("outbox")).into_iter().flatten().flatten() {
            let text = decode_quoted_printable(&std::fs::read_to_string(entry.path()).unwrap_or_default());
            if text.contains(&format!("To: {to}")) && text.contains("Subject: ACME: ") {
                return entry.path();
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no challenge mail to {to}");
}

fn enroll(server: &TestServer, eab: &(String, Vec<u8>), out: &Path, extra: &[String]) -> Child {
    let hmac = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &eab.1);
    Command::new(env!("CARGO_BIN_EXE_dualca"))
        .arg("enroll")
        .args(["--directory", &server.directory(dualca_ca::Track::Human)])
        // The key as its own argument, as people paste it: one key in 64 begins with `-`.
        .args(["--eab-kid", &eab.0, "--eab-hmac-key", &hmac, "--email", EMAIL])
        .arg("--ca-root")
        .arg(&server.root_pem)
        .arg("--out")
        .arg(out)
        .args(["--wait", "30s"])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start dualca enroll")
}

async fn finish(child: Child) -> (String, String) {
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.unwrap().unwrap();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned());
    assert!(output.status.success(), "dualca enroll failed:\n{stdout}\n{stderr}");
    (stdout, stderr)
}

async fn enroll_through_a_dkim_relay_and_get_a_pkcs12_bundle(db: Db) {
    let Some(python) = relay_python() else { return };
    let Some(server) = TestServer::start(db).await else { return };
    let eab = enrolled_person(&server, EMAIL, "E-7", false).await;
    let dir = tempfile::tempdir().unwrap();
    let (_relay, relay_port) = start_relay(&python, &server, dir.path()).await;
    let password = dir.path().join("p12-password");
    std::fs::write(&password, "correct horse\n").unwrap();
    let out = dir.path().join("out");
    let mut child = enroll(
        &server,
        &eab,
        &out,
        &[
            "--smtp-relay".into(),
            format!("smtp://127.0.0.1:{relay_port}"),
            "--pkcs12-password-file".into(),
            password.display().to_string(),
        ],
    );
    // The person saves the challenge mail and gives enroll its path.
    let saved = challenge_file(&server, EMAIL).await;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{}\n", saved.display()).as_bytes()).await.unwrap();
    drop(stdin);
    let (stdout, stderr) = finish(child).await;
    assert!(stderr.contains("reply sent"), "{stderr}");

    let key_path = out.join(format!("{EMAIL}.key"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(stdout.contains(&format!("{EMAIL}.pem")), "{stdout}");
    let chain = std::fs::read_to_string(out.join(format!("{EMAIL}.pem"))).unwrap();
    let leaf = crate::common::first_cert(&chain);
    let text = String::from_utf8(leaf.to_text().unwrap()).unwrap();
    assert!(text.contains(&format!("email:{EMAIL}")), "{text}");
    assert!(text.contains("E-mail Protection"), "{text}");
    let key = PKey::private_key_from_pem(&std::fs::read(&key_path).unwrap()).unwrap();
    assert!(leaf.public_key().unwrap().public_eq(&key), "the key written is the certificate's");
    // The bundle opens with the password and holds the key, the leaf and the issuing CA.
    let p12 = openssl::pkcs12::Pkcs12::from_der(&std::fs::read(out.join(format!("{EMAIL}.p12"))).unwrap()).unwrap();
    let parsed = p12.parse2("correct horse").unwrap();
    assert!(parsed.pkey.unwrap().public_eq(&key));
    assert_eq!(parsed.cert.unwrap().to_der().unwrap(), leaf.to_der().unwrap());
    assert_eq!(parsed.ca.map(|c| c.len()), Some(1));
    assert!(openssl::pkcs12::Pkcs12::from_der(&p12.to_der().unwrap()).unwrap().parse2("wrong").is_err());

    // The relay's real DKIM pass is what authenticated the reply, and it named the mail.
    let auditor = server.admin_token(dualca_admin::Role::Auditor);
    let (_, audit) =
        server.admin_call("GET", "/admin/api/human/audit?action=challenge.reply-received", &auditor, json!(null)).await;
    let details = &audit["events"][0]["details"];
    assert_eq!(details["authentication"], format!("dkim:example.test@{TRUSTED_RELAY}"), "{audit}");
    assert!(details.get("error").is_none(), "{details}");
    server.stop().await;
}
on_both_databases!(enroll_through_a_dkim_relay_and_get_a_pkcs12_bundle);

/// Without a relay, enroll prints the exact reply; the person sends it (here the test, as the
/// person's mail system and the trusted relay) and presses Enter.
#[actix_web::test]
async fn enroll_prints_the_reply_when_it_has_no_relay() {
    let Some(server) = TestServer::start(Db::Sqlite).await else { return };
    let eab = enrolled_person(&server, EMAIL, "E-8", true).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut child =
        enroll(&server, &eab, &out, &["--profile".into(), "client-auth".into(), "--key-type".into(), "p256".into()]);
    let text = decode_quoted_printable(&std::fs::read_to_string(challenge_file(&server, EMAIL).await).unwrap());
    let subject = text.lines().find(|l| l.starts_with("Subject: ")).unwrap().to_string();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{subject}\n").as_bytes()).await.unwrap();
    // Read what enroll printed up to the end of the RESPONSE block.
    let mut stdout = child.stdout.take().unwrap();
    let mut printed = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&printed).contains("-----END ACME RESPONSE-----") {
        let n = tokio::time::timeout(Duration::from_secs(20), stdout.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "enroll stopped before printing the reply: {}", String::from_utf8_lossy(&printed));
        printed.extend_from_slice(&buf[..n]);
    }
    let printed = String::from_utf8(printed).unwrap();
    let reply_start = printed.find("From: ").unwrap();
    let reply_end = printed.find("-----END ACME RESPONSE-----").unwrap() + "-----END ACME RESPONSE-----".len();
    let reply = format!("{}\r\n{}\r\n", dkim_pass("example.test"), &printed[reply_start..reply_end]);
    let reply = reply.replace("\r\n", "\n").replace('\n', "\r\n");
    let (code, answer) = smtp_send(server.intake_addr(), EMAIL, "dualca@localhost", &reply).await;
    assert_eq!(code, 250, "{answer}");
    stdin.write_all(b"\n").await.unwrap();
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.unwrap().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let chain = std::fs::read_to_string(out.join(format!("{EMAIL}.pem"))).unwrap();
    let text = String::from_utf8(crate::common::first_cert(&chain).to_text().unwrap()).unwrap();
    assert!(text.contains("TLS Web Client Authentication"), "{text}");
    assert!(!out.join(format!("{EMAIL}.p12")).exists(), "no bundle unless asked");
    server.stop().await;
}
