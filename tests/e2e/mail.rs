//! The outbox and mail delivery, against a real SMTP server: aiosmtpd (Debian's
//! python3-aiosmtpd) run as a process that stores every message it receives in a Maildir. The
//! messages are read back with Python's own `email` package, so that what is checked is what a
//! mail client would see after decoding.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use dualca_ca::{OutboundMail, Track};
use serde_json::Value;
use tokio::process::{Child, Command};

use crate::common::{free_loopback_port, in_ci, Db, TestServer};
use crate::on_both_databases;

/// The longest any wait in these tests polls for.
const WAIT: Duration = Duration::from_secs(10);

/// A Python that can import aiosmtpd: `DUALCA_TEST_PYTHON`, else the system's, else `python3`
/// on PATH (which may be another installation). None means the test is skipped; where the
/// clients are required (CI, or DUALCA_REQUIRE_CLIENTS=1) a missing one fails it.
pub(crate) fn aiosmtpd_python() -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = match std::env::var_os("DUALCA_TEST_PYTHON") {
        Some(path) => vec![PathBuf::from(path)],
        None => vec![PathBuf::from("/usr/bin/python3"), PathBuf::from("python3")],
    };
    let found = candidates.into_iter().find(|python| {
        std::process::Command::new(python)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if found.is_none() {
        let required = in_ci() || std::env::var("DUALCA_REQUIRE_CLIENTS").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "aiosmtpd is required here (CI or DUALCA_REQUIRE_CLIENTS=1) but no python3 can import it: \
             apt-get install python3-aiosmtpd, or set DUALCA_TEST_PYTHON"
        );
        eprintln!("aiosmtpd not found (apt-get install python3-aiosmtpd): skipping this test");
    }
    found
}

/// Polls `probe` every 100 ms until it returns something, for at most WAIT.
async fn wait_for<T>(what: &str, probe: impl FnMut() -> Option<T>) -> T {
    wait_for_explained(what, probe, String::new).await
}

/// `wait_for`, whose failure also says what `explain` finds at that moment (the state a
/// timeout alone would not show).
async fn wait_for_explained<T>(
    what: &str,
    mut probe: impl FnMut() -> Option<T>,
    explain: impl FnOnce() -> String,
) -> T {
    let started = Instant::now();
    loop {
        if let Some(found) = probe() {
            return found;
        }
        if started.elapsed() >= WAIT {
            panic!("gave up after {WAIT:?} waiting for {what}. {}", explain());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// aiosmtpd listening on a loopback port, storing what it receives in a Maildir. The process
/// is killed when this is dropped.
pub(crate) struct SmtpServer {
    python: PathBuf,
    child: Child,
    maildir: PathBuf,
    log: PathBuf,
}

impl SmtpServer {
    pub(crate) async fn start(python: &Path, port: u16, dir: &Path) -> SmtpServer {
        let maildir = dir.join("maildir");
        let log = dir.join("aiosmtpd.log");
        // One file for both streams, through one open file description, so that neither
        // writes over the other.
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(python)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .expect("start aiosmtpd");
        let mut server = SmtpServer { python: python.to_path_buf(), child, maildir, log };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("aiosmtpd exited with {status}: {}", std::fs::read_to_string(&server.log).unwrap_or_default());
            }
            assert!(started.elapsed() < WAIT, "aiosmtpd did not listen on port {port} within {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }

    /// Every message received so far, parsed by Python's `email` package: the top-level
    /// headers (lower-cased names), the content type, and each leaf part's decoded content by
    /// content type.
    pub(crate) fn messages(&self) -> Vec<Value> {
        const PARSE: &str = r#"
import email, email.policy, json, os, sys
out = []
for sub in ("new", "cur"):
    folder = os.path.join(sys.argv[1], sub)
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        with open(os.path.join(folder, name), "rb") as f:
            m = email.message_from_binary_file(f, policy=email.policy.default)
        parts = {p.get_content_type(): p.get_content() for p in m.walk() if not p.is_multipart()}
        out.append({"headers": {k.lower(): str(v) for k, v in m.items()},
                    "content_type": m.get_content_type(), "parts": parts})
print(json.dumps(out))
"#;
        let output = std::process::Command::new(&self.python).args(["-c", PARSE]).arg(&self.maildir).output().unwrap();
        assert!(output.status.success(), "parsing the Maildir failed: {}", String::from_utf8_lossy(&output.stderr));
        match serde_json::from_slice(&output.stdout).unwrap() {
            Value::Array(messages) => messages,
            other => panic!("unexpected parser output {other}"),
        }
    }

    /// Every message received so far, as the Maildir holds it.
    pub(crate) fn raw_messages(&self) -> Vec<Vec<u8>> {
        let mut files: Vec<PathBuf> = ["new", "cur"]
            .iter()
            .filter_map(|sub| std::fs::read_dir(self.maildir.join(sub)).ok())
            .flat_map(|entries| entries.map(|e| e.unwrap().path()))
            .collect();
        files.sort();
        files.iter().map(|f| std::fs::read(f).unwrap()).collect()
    }

    pub(crate) async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

fn reminder(recipient: &str) -> OutboundMail {
    OutboundMail::notification(
        Track::Human,
        recipient,
        "Your S/MIME certificate expires in 7 days",
        &["Hello <Alice> & co,", "renew it with `dualca enroll` before it expires."],
    )
}

fn header<'a>(message: &'a Value, name: &str) -> &'a str {
    message["headers"][name].as_str().unwrap_or_else(|| panic!("no {name} header in {message:#}"))
}

/// Waits until /metrics reports `expected` for the gauge `name`. Tests run in parallel in one
/// process and share the metrics registry, where each scrape sets the gauge from its own
/// server's database just before reading it, so one reading can be another server's.
async fn expect_metric(server: &TestServer, name: &str, expected: &str) {
    let started = Instant::now();
    loop {
        let body =
            server.http().get(format!("{}/metrics", server.public_url)).send().await.unwrap().text().await.unwrap();
        let value = body.lines().find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')));
        if value == Some(expected) {
            return;
        }
        assert!(started.elapsed() < WAIT, "{name} is {value:?}, not {expected:?}, in /metrics:\n{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn mail_reaches_the_smtp_relay(db: Db) {
    let Some(python) = aiosmtpd_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let port = free_loopback_port();
    let smtp = SmtpServer::start(&python, port, dir.path()).await;
    let Some(server) = TestServer::start_with(db, |s| s.mail.smtp_url = format!("smtp://127.0.0.1:{port}")).await
    else {
        return;
    };

    assert!(server.ca.enqueue_mail(&reminder("alice@example.test")).unwrap());
    let messages = wait_for("the mail at the SMTP server", || Some(smtp.messages()).filter(|m| !m.is_empty())).await;
    assert_eq!(messages.len(), 1, "{messages:#?}");
    let message = &messages[0];
    assert_eq!(header(message, "x-rcptto"), "alice@example.test");
    assert_eq!(header(message, "x-mailfrom"), "dualca@localhost");
    assert_eq!(header(message, "to"), "alice@example.test");
    assert_eq!(header(message, "from"), "dualca <dualca@localhost>");
    assert_eq!(header(message, "subject"), "Your S/MIME certificate expires in 7 days");
    assert_eq!(header(message, "auto-submitted"), "auto-generated");
    let message_id = header(message, "message-id");
    assert!(message_id.starts_with('<') && message_id.ends_with("@localhost>"), "{message_id}");
    assert_eq!(message["content_type"], "multipart/alternative");
    let text = message["parts"]["text/plain"].as_str().unwrap();
    let html = message["parts"]["text/html"].as_str().unwrap();
    assert!(text.contains("Hello <Alice> & co,"), "{text}");
    assert!(html.contains("<p>Hello &lt;Alice&gt; &amp; co,</p>"), "{html}");
    assert!(html.contains("<h1>Your S/MIME certificate expires in 7 days</h1>"), "{html}");

    wait_for("the mail marked sent", || (server.ca.outbox_backlog().unwrap() == 0).then_some(())).await;
    assert!(server.ca.undelivered_mail(10).unwrap().is_empty());
    expect_metric(&server, "dualca_outbox_backlog", "0").await;
    server.stop().await;
    smtp.stop().await;
}
on_both_databases!(mail_reaches_the_smtp_relay);

/// .eml files in the outbox directory, named by their outbox ids.
fn eml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|entries| entries.map(|e| e.unwrap().path()).collect()).unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "eml"));
    files.sort();
    files
}

async fn without_a_relay_mail_becomes_eml_files(db: Db) {
    let Some(server) = TestServer::start(db).await else { return };
    let outbox = server.settings.data_dir.join("outbox");
    assert!(server.ca.enqueue_mail(&reminder("bob@example.test")).unwrap());
    let files = wait_for("an .eml file", || Some(eml_files(&outbox)).filter(|f| !f.is_empty())).await;
    assert_eq!(files.len(), 1, "{files:?}");
    let eml = std::fs::read_to_string(&files[0]).unwrap();
    for expected in [
        "To: bob@example.test\r\n",
        "Subject: Your S/MIME certificate expires in 7 days\r\n",
        "Auto-Submitted: auto-generated\r\n",
        "Content-Type: multipart/alternative;",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Type: text/html; charset=utf-8",
    ] {
        assert!(eml.contains(expected), "{expected:?} is not in\n{eml}");
    }
    let id = files[0].file_stem().unwrap().to_str().unwrap();
    assert!(eml.contains(&format!("Message-ID: <{id}@localhost>\r\n")), "{eml}");
    wait_for("the mail marked sent", || (server.ca.outbox_backlog().unwrap() == 0).then_some(())).await;

    // A recipient that is no address can never be sent to: it is given up at once, not retried.
    assert!(server.ca.enqueue_mail(&reminder("not an address")).unwrap());
    let given_up = wait_for("the mail given up", || {
        server.ca.undelivered_mail(10).unwrap().into_iter().find(|m| m.attempts >= dualca_ca::MAX_MAIL_ATTEMPTS)
    })
    .await;
    assert!(given_up.last_error.as_deref().is_some_and(|e| e.contains("not an address")), "{given_up:?}");
    assert_eq!(server.ca.outbox_backlog().unwrap(), 0);
    expect_metric(&server, "dualca_outbox_given_up", "1").await;
    assert_eq!(eml_files(&outbox).len(), 1);
    server.stop().await;
}
on_both_databases!(without_a_relay_mail_becomes_eml_files);

/// A server whose relay, on a free loopback port, is not started yet: mail fails until the
/// test starts an SMTP server there (with the Python returned, in the directory returned).
async fn server_with_relay_down(db: Db) -> Option<(PathBuf, tempfile::TempDir, u16, TestServer)> {
    let python = aiosmtpd_python()?;
    let dir = tempfile::tempdir().unwrap();
    let port = free_loopback_port();
    let server = TestServer::start_with(db, |s| s.mail.smtp_url = format!("smtp://127.0.0.1:{port}")).await?;
    Some((python, dir, port, server))
}

async fn delivery_is_retried_until_the_relay_is_up(db: Db) {
    let Some((python, dir, port, server)) = server_with_relay_down(db).await else { return };

    assert!(server.ca.enqueue_mail(&reminder("carol@example.test")).unwrap());
    let failed =
        wait_for("a failed attempt", || server.ca.undelivered_mail(10).unwrap().into_iter().find(|m| m.attempts > 0))
            .await;
    assert_eq!(failed.recipient, "carol@example.test");
    assert!(failed.last_error.is_some());
    assert!(failed.next_attempt_at > server.ca.clock.unix(), "the retry waits: {failed:?}");
    assert!(server.ca.due_mail(10).unwrap().is_empty());
    assert_eq!(server.ca.outbox_backlog().unwrap(), 1);
    expect_metric(&server, "dualca_outbox_backlog", "1").await;

    let smtp = SmtpServer::start(&python, port, dir.path()).await;
    // Past the first back-off (30 s), without waiting for it.
    server.ca.clock.advance(time::Duration::minutes(2));
    let messages = wait_for_explained(
        "the mail at the SMTP server",
        || Some(smtp.messages()).filter(|m| !m.is_empty()),
        || {
            format!(
                "The clock reads {}; the outbox holds {:?}; aiosmtpd's log: {:?}",
                server.ca.clock.unix(),
                server.ca.undelivered_mail(10),
                std::fs::read_to_string(&smtp.log)
            )
        },
    )
    .await;
    assert_eq!(header(&messages[0], "x-rcptto"), "carol@example.test");
    wait_for("the mail marked sent", || (server.ca.outbox_backlog().unwrap() == 0).then_some(())).await;
    // A few more delivery rounds: the sent mail is not sent again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(smtp.messages().len(), 1);
    assert!(server.ca.undelivered_mail(10).unwrap().is_empty());
    expect_metric(&server, "dualca_outbox_backlog", "0").await;
    server.stop().await;
    smtp.stop().await;
}
on_both_databases!(delivery_is_retried_until_the_relay_is_up);

async fn a_dedupe_key_enqueues_once(db: Db) {
    let Some(server) = TestServer::start(db).await else { return };
    let outbox = server.settings.data_dir.join("outbox");
    let keyed = reminder("dave@example.test").with_dedupe_key("expiry-reminder:0123abcd:7d", i64::MAX);
    assert!(server.ca.enqueue_mail(&keyed).unwrap());
    assert!(!server.ca.enqueue_mail(&keyed).unwrap());
    let other_occasion = reminder("dave@example.test").with_dedupe_key("expiry-reminder:0123abcd:1d", i64::MAX);
    assert!(server.ca.enqueue_mail(&other_occasion).unwrap());
    // Mail without a key is never deduplicated.
    assert!(server.ca.enqueue_mail(&reminder("dave@example.test")).unwrap());
    assert!(server.ca.enqueue_mail(&reminder("dave@example.test")).unwrap());
    wait_for("four .eml files", || Some(eml_files(&outbox)).filter(|f| f.len() >= 4)).await;
    wait_for("the mail marked sent", || (server.ca.outbox_backlog().unwrap() == 0).then_some(())).await;

    // The key holds after delivery and across a restart.
    server.stop().await;
    let TestServer { settings, dir, responder, .. } = server;
    let server = TestServer::boot(settings, dir, responder).await;
    assert!(!server.ca.enqueue_mail(&keyed).unwrap());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(eml_files(&outbox).len(), 4);
    assert_eq!(server.ca.outbox_backlog().unwrap(), 0);
    server.stop().await;
}
on_both_databases!(a_dedupe_key_enqueues_once);

/// The TXT record `dualca mail dkim-record` prints for a configuration file with these `[mail]`
/// settings (written to `dir`): its owner name and the record's strings joined, as a
/// receiver's resolver joins them.
fn published_dkim_record(dir: &Path, key: &Path, selector: &str, domain: &str) -> (String, String) {
    let config = dir.join(format!("{selector}.toml"));
    let settings = format!(
        "[mail]\nfrom = \"dualca <ca@pki.example.test>\"\ndkim_key_file = {:?}\ndkim_selector = {selector:?}\ndkim_domain = {domain:?}\n",
        key.to_string_lossy()
    );
    std::fs::write(&config, settings).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_dualca"))
        .arg("--config")
        .arg(&config)
        .args(["mail", "dkim-record"])
        .output()
        .unwrap();
    assert!(output.status.success(), "dkim-record failed: {}", String::from_utf8_lossy(&output.stderr));
    let line = String::from_utf8(output.stdout).unwrap();
    let (name, rest) = line.trim().split_once(". IN TXT ( ").unwrap_or_else(|| panic!("not a TXT line: {line}"));
    let strings = rest.strip_suffix(" )").unwrap_or_else(|| panic!("not a TXT line: {line}"));
    let record: String = strings.split('"').skip(1).step_by(2).collect();
    assert!(strings.split('"').skip(1).step_by(2).all(|s| s.len() <= 255), "{line}");
    (name.to_string(), record)
}

/// Checks `message` (its raw bytes) with dkimpy, an implementation of RFC 6376 and RFC 8463
/// of its own, handed `record` as `name`'s TXT record (DNS is the one stand-in: this machine
/// has none). Returns dkimpy's verdict on the message, its verdict after the Subject is
/// changed, and the signature's tags with their whitespace removed.
fn dkimpy_verdict(python: &Path, message: &[u8], name: &str, record: &str) -> Value {
    const VERIFY: &str = r#"
import json, sys
import dkim
from dkim.util import parse_tag_value
message = sys.stdin.buffer.read()
name, record = sys.argv[1].encode(), sys.argv[2].encode()
def lookup(query, timeout=5):
    return record if query.rstrip(b".") == name else None
ok = dkim.verify(message, dnsfunc=lookup)
tampered = dkim.verify(message.replace(b"\nSubject: ", b"\nSubject: Re: ", 1), dnsfunc=lookup)
head = message.split(b"\r\n\r\n", 1)[0].replace(b"\r\n\t", b"\t").replace(b"\r\n ", b" ")
signature = next(l for l in head.split(b"\r\n") if l.lower().startswith(b"dkim-signature:"))
tags = {k.decode(): b"".join(v.split()).decode() for k, v in parse_tag_value(signature.split(b":", 1)[1]).items()}
print(json.dumps({"ok": ok, "tampered": tampered, "tags": tags}))
"#;
    let mut child = std::process::Command::new(python)
        .args(["-c", VERIFY, name, record])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), message).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "dkimpy failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// RFC 8823 §3.1 requires challenge mails to be signed (DKIM or S/MIME): with `[mail]
/// dkim_key_file` every mail is DKIM-signed, and dkimpy verifies it against the record `dualca
/// mail dkim-record` prints. An RSA key signs mail sent through the SMTP relay, an Ed25519 key
/// (RFC 8463) a challenge mail written as an .eml file; a changed Subject fails both.
async fn outgoing_mail_is_dkim_signed(db: Db) {
    let Some(python) = crate::enroll::relay_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let rsa_key = dir.path().join("rsa.pem");
    let rsa = openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
    std::fs::write(&rsa_key, rsa.private_key_to_pem_pkcs8().unwrap()).unwrap();
    let ed_key = dir.path().join("ed25519.pem");
    std::fs::write(&ed_key, openssl::pkey::PKey::generate_ed25519().unwrap().private_key_to_pem_pkcs8().unwrap())
        .unwrap();

    // RSA, through the relay: the reminder as the SMTP server received it.
    let port = free_loopback_port();
    let smtp = SmtpServer::start(&python, port, dir.path()).await;
    let mail_settings = |key: &Path, selector: &str| {
        let (key, selector) = (key.to_string_lossy().into_owned(), selector.to_string());
        move |s: &mut dualca::config::Settings| {
            s.mail.from = "dualca <ca@pki.example.test>".into();
            s.mail.dkim_key_file = key;
            s.mail.dkim_selector = selector;
            s.mail.dkim_domain = "Example.test".into();
        }
    };
    let rsa_settings = mail_settings(&rsa_key, "rsa2026");
    let Some(server) = TestServer::start_with(db, |s| {
        rsa_settings(s);
        s.mail.smtp_url = format!("smtp://127.0.0.1:{port}");
    })
    .await
    else {
        return;
    };
    let (name, record) = published_dkim_record(dir.path(), &rsa_key, "rsa2026", "Example.test");
    assert_eq!(name, "rsa2026._domainkey.example.test");
    assert!(record.starts_with("v=DKIM1; k=rsa; p=MII") && record.len() > 255, "{record}");

    assert!(server.ca.enqueue_mail(&reminder("alice@example.test")).unwrap());
    wait_for("the mail at the SMTP server", || Some(smtp.messages()).filter(|m| !m.is_empty())).await;
    let received = smtp.raw_messages();
    assert_eq!(received.len(), 1);
    // aiosmtpd's Maildir stores lines with LF (and adds X-Peer, X-MailFrom and X-RcptTo, which
    // the signature does not cover); dkimpy is given them with CRLF, as they arrived.
    let text = String::from_utf8(received[0].clone()).unwrap();
    let from_relay: String = text.lines().map(|line| format!("{line}\r\n")).collect();
    let verdict = dkimpy_verdict(&python, from_relay.as_bytes(), &name, &record);
    assert_eq!(verdict["ok"], true, "{verdict:#}\n{from_relay}");
    assert_eq!(verdict["tampered"], false, "{verdict:#}");
    let tags = &verdict["tags"];
    assert_eq!(tags["a"], "rsa-sha256");
    assert_eq!(tags["c"], "relaxed/relaxed");
    assert_eq!(tags["d"], "example.test");
    assert_eq!(tags["s"], "rsa2026");
    let signed: Vec<&str> = tags["h"].as_str().unwrap().split(':').collect();
    // RFC 8823 §3.1's list, and the present ones once more than they occur.
    for name in [
        "from",
        "sender",
        "reply-to",
        "to",
        "cc",
        "subject",
        "date",
        "in-reply-to",
        "references",
        "message-id",
        "content-type",
        "content-transfer-encoding",
    ] {
        assert!(signed.contains(&name), "{name} is not signed: {signed:?}");
    }
    assert_eq!(signed.iter().filter(|n| **n == "from").count(), 2, "{signed:?}");
    assert_eq!(signed.iter().filter(|n| **n == "cc").count(), 1, "{signed:?}");
    server.stop().await;
    smtp.stop().await;

    // Ed25519, to .eml files: a mail shaped as a challenge mail, from the reply address.
    let ed_settings = mail_settings(&ed_key, "ed2026");
    let Some(server) = TestServer::start_with(db, ed_settings).await else { return };
    let (name, record) = published_dkim_record(dir.path(), &ed_key, "ed2026", "example.test");
    assert_eq!(name, "ed2026._domainkey.example.test");
    assert!(record.starts_with("v=DKIM1; k=ed25519; p="), "{record}");
    let mut challenge = reminder("bob@example.test");
    challenge.subject = "ACME: 5P6rQ-kGyn7r".into();
    challenge.sender = Some("acme-replies@example.test".into());
    challenge.auto_submitted = Some("auto-generated; type=acme".into());
    assert!(server.ca.enqueue_mail(&challenge).unwrap());
    let outbox = server.settings.data_dir.join("outbox");
    let files = wait_for("an .eml file", || Some(eml_files(&outbox)).filter(|f| !f.is_empty())).await;
    let eml = std::fs::read(&files[0]).unwrap();
    assert!(
        eml.starts_with(b"DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n\td=example.test; s=ed2026; t="),
        "{}",
        String::from_utf8_lossy(&eml)
    );
    let verdict = dkimpy_verdict(&python, &eml, &name, &record);
    assert_eq!(verdict["ok"], true, "{verdict:#}\n{}", String::from_utf8_lossy(&eml));
    assert_eq!(verdict["tampered"], false, "{verdict:#}");
    assert!(verdict["tags"]["h"].as_str().unwrap().contains("auto-submitted:auto-submitted"), "{verdict:#}");
    server.stop().await;
}
on_both_databases!(outgoing_mail_is_dkim_signed);

/// Once the relay is fixed, an operator lists the mail that was given up and sends it again
/// through the admin API or the command line: the track's own role may, others may not; mail still being tried,
/// mail already sent and mail of the other track are refused with the API's problems, and a
/// challenge mail's subject (half of its token) is never shown.
async fn given_up_mail_is_listed_and_sent_again_on_request(db: Db) {
    use dualca_admin::Role;
    use serde_json::json;
    let Some((python, dir, port, server)) = server_with_relay_down(db).await else { return };
    let token = |role: Role, subject: &str| {
        server.settings.admin_auth().unwrap().mint(role, subject, 3600, server.ca.clock.unix()).unwrap().0
    };
    let (helpdesk, inventory, auditor) =
        (token(Role::Helpdesk, "hd-1"), token(Role::Inventory, "inv-1"), token(Role::Auditor, "aud-1"));

    // The relay is down: the reminder fails; here it is given up at once rather than after 20
    // failures. A challenge-shaped mail waits its turn behind it.
    assert!(server.ca.enqueue_mail(&reminder("erin@example.test")).unwrap());
    let mut challenge = reminder("erin@example.test");
    challenge.subject = "ACME: secret-token-part".into();
    challenge.auto_submitted = Some("auto-generated; type=acme".into());
    challenge.id = Some("challenge-mail-1".into());
    let failed =
        wait_for("a failed attempt", || server.ca.undelivered_mail(10).unwrap().into_iter().find(|m| m.attempts > 0))
            .await;
    server.ca.abandon_mail(&failed.id, "connection refused").unwrap();
    assert!(server.ca.enqueue_mail(&challenge).unwrap());

    let (status, listed) = server.admin_call("GET", "/admin/api/human/outbox", &auditor, json!(null)).await;
    assert_eq!(status, 200, "{listed}");
    let mail = listed["mail"].as_array().unwrap();
    assert_eq!(mail.len(), 2, "{listed:#}");
    // Oldest first, by the second of creation and then by id: the two are often made within
    // one second, so they are told apart by id here, not by place.
    let (given_up, waiting) = match mail.iter().position(|m| m["id"] == failed.id.as_str()) {
        Some(0) => (&mail[0], &mail[1]),
        Some(1) => (&mail[1], &mail[0]),
        _ => panic!("the given-up mail is listed: {listed:#}"),
    };
    assert_eq!(given_up["recipient"], "erin@example.test");
    assert_eq!(given_up["subject"], "Your S/MIME certificate expires in 7 days");
    assert_eq!(
        (given_up["given_up"].as_bool(), given_up["last_error"].as_str()),
        (Some(true), Some("connection refused"))
    );
    assert_eq!((waiting["id"].as_str(), &waiting["given_up"]), (Some("challenge-mail-1"), &json!(false)));
    assert!(!listed.to_string().contains("secret-token-part"), "{listed}");
    let (status, other) = server.admin_call("GET", "/admin/api/machine/outbox", &auditor, json!(null)).await;
    assert_eq!((status, other["mail"].as_array().map(Vec::len)), (200, Some(0)), "{other}");

    let retry = format!("/admin/api/human/outbox/{}/retry", failed.id);
    for (who, refused) in [("auditor", &auditor), ("inventory", &inventory)] {
        let (status, body) = server.admin_call("POST", &retry, refused, json!(null)).await;
        assert_eq!(status, 403, "{who}: {body}");
    }
    let (status, body) = server.admin_call("POST", "/admin/api/machine/outbox/x/retry", &helpdesk, json!(null)).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = server
        .admin_call(
            "POST",
            &format!("/admin/api/machine/outbox/{}/retry", failed.id),
            &token(Role::Admin, "root"),
            json!(null),
        )
        .await;
    assert_eq!(
        (status, body["detail"].as_str()),
        (404, Some(format!("no unsent mail {} on the machine track", failed.id).as_str()))
    );
    let (status, body) =
        server.admin_call("POST", "/admin/api/human/outbox/challenge-mail-1/retry", &helpdesk, json!(null)).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("still being tried"), "{body}");
    assert_eq!(server.ca.outbox_given_up().unwrap(), 1, "refusals change nothing");

    // The relay comes back; the help desk sends the reminder again, and it arrives.
    let smtp = SmtpServer::start(&python, port, dir.path()).await;
    server.ca.clock.advance(time::Duration::minutes(2));
    let (status, body) = server.admin_call("POST", &retry, &helpdesk, json!(null)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["attempts"].as_i64(), body["given_up"].as_bool()), (Some(0), Some(false)));
    let messages = wait_for("both mails at the SMTP server", || Some(smtp.messages()).filter(|m| m.len() == 2)).await;
    assert!(messages.iter().any(|m| header(m, "subject") == "Your S/MIME certificate expires in 7 days"));
    wait_for("the mail marked sent", || (server.ca.outbox_backlog().unwrap() == 0).then_some(())).await;
    let (status, body) = server.admin_call("POST", &retry, &helpdesk, json!(null)).await;
    assert_eq!(status, 404, "sent mail is not sent again: {body}");
    let (status, audit) =
        server.admin_call("GET", "/admin/api/human/audit?action=mail.retry", &auditor, json!(null)).await;
    assert_eq!(status, 200, "{audit}");
    let events = audit["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{audit:#}");
    assert_eq!(events[0]["actor"], "admin:hd-1");
    assert_eq!(events[0]["subject"], format!("mail:{}", failed.id));

    // The command line does the same, as `operator:$USER`: a mail no attempt can send is
    // listed as given up, sent again, and given up again at its next attempt.
    let cli = |args: &[&str]| server.cli("carol", &[&["mail"], args].concat());
    assert!(server.ca.enqueue_mail(&reminder("not an address")).unwrap());
    let hopeless = wait_for("the hopeless mail given up", || {
        server.ca.undelivered_mail(10).unwrap().into_iter().find(|m| m.attempts >= dualca_ca::MAX_MAIL_ATTEMPTS)
    })
    .await;
    let (ok, listed, stderr) = cli(&["undelivered", "human"]);
    assert!(ok, "{stderr}");
    assert!(listed.starts_with(&format!("{}  ", hopeless.id)), "{listed}");
    assert!(listed.contains("given-up  attempts=20  to=not an address  error=recipient"), "{listed}");
    assert_eq!(cli(&["undelivered", "machine"]).1, "");
    let (ok, retried, stderr) = cli(&["retry", "human", &hopeless.id]);
    assert!(ok, "{stderr}");
    assert!(retried.contains("  due ") && retried.contains("attempts=0"), "{retried}");
    let (ok, _, stderr) = cli(&["retry", "machine", &hopeless.id]);
    assert!(!ok && stderr.contains(&format!("no unsent mail {} on the machine track", hopeless.id)), "{stderr}");
    // An id is base64url and begins with '-' one time in 64: it is an id, not a flag.
    let (ok, _, stderr) = cli(&["retry", "human", "-AbC"]);
    assert!(!ok && stderr.contains("no unsent mail -AbC on the human track"), "{stderr}");
    wait_for("given up again", || {
        let again = server.ca.undelivered_mail(10).unwrap();
        again.iter().any(|m| m.id == hopeless.id && m.attempts >= dualca_ca::MAX_MAIL_ATTEMPTS).then_some(())
    })
    .await;
    let (_, audit) = server.admin_call("GET", "/admin/api/human/audit?action=mail.retry", &auditor, json!(null)).await;
    let actors: Vec<&str> = audit["events"].as_array().unwrap().iter().map(|e| e["actor"].as_str().unwrap()).collect();
    assert_eq!(actors.len(), 2, "{audit:#}");
    assert!(actors.contains(&"operator:carol") && actors.contains(&"admin:hd-1"), "{actors:?}");
    server.stop().await;
    smtp.stop().await;
}
on_both_databases!(given_up_mail_is_listed_and_sent_again_on_request);
