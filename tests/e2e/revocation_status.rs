//! What relying parties see (RFC 5280 CRLs, RFC 6960 OCSP), checked with the openssl command
//! line: responses verify against the CA chain, revocations show within a second, and bad
//! requests get the right OCSP error.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use dualca::config::OcspSigner;
use dualca_ca::Track;
use instant_acme::{RevocationReason, RevocationRequest};

use crate::common::{first_cert, open_human_track, Db, TestServer};
use crate::on_both_databases;
use crate::protocol::{account, issue};

fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl").args(args).output().expect("the openssl command is installed");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

struct Files {
    dir: PathBuf,
}

impl Files {
    fn new(server: &TestServer) -> Files {
        let dir = server.dir.path().join("relying-party");
        std::fs::create_dir_all(&dir).unwrap();
        Files { dir }
    }

    fn write(&self, name: &str, data: &[u8]) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, data).unwrap();
        path.to_string_lossy().into_owned()
    }
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

async fn fetch(server: &TestServer, url: &str) -> reqwest::Response {
    server.http().get(url).send().await.unwrap()
}

async fn crl_der(server: &TestServer, track: Track) -> Vec<u8> {
    let res = fetch(server, &format!("{}/crl/{track}.crl", server.public_url)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/pkix-crl");
    assert!(res.headers()["cache-control"].to_str().unwrap().contains("max-age"));
    assert!(res.headers().contains_key("etag"));
    res.bytes().await.unwrap().to_vec()
}

async fn post_ocsp(server: &TestServer, track: Track, request: Vec<u8>) -> Vec<u8> {
    let res = server
        .http()
        .post(format!("{}/ocsp/{track}", server.public_url))
        .header("content-type", "application/ocsp-request")
        .body(request)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/ocsp-response");
    let cache = res.headers()["cache-control"].to_str().unwrap().to_string();
    let der = res.bytes().await.unwrap().to_vec();
    // A signed answer (well over 127 bytes, so its length is in the long form) may be cached
    // for a while; an error status never.
    let expected = if response_status(&der) == openssl::ocsp::OcspResponseStatus::SUCCESSFUL {
        assert!(der.len() > 127, "{} bytes", der.len());
        "public, max-age=300, no-transform"
    } else {
        "no-store"
    };
    assert_eq!(cache, expected);
    der
}

/// Asks the responder about `cert` with an openssl-made request (nonce included) and verifies
/// the answer with `openssl ocsp`; returns openssl's report.
async fn ocsp_check(server: &TestServer, files: &Files, track: Track, cert_pem: &str, tag: &str) -> String {
    let issuer = path(&server.root_pem.with_file_name(format!("{track}.pem")));
    let cert = files.write(&format!("{tag}.pem"), cert_pem.as_bytes());
    let req = path(&files.dir.join(format!("{tag}-req.der")));
    let (ok, text) = openssl(&["ocsp", "-issuer", &issuer, "-cert", &cert, "-reqout", &req]);
    assert!(ok, "{text}");
    let resp = files.write(&format!("{tag}-resp.der"), &post_ocsp(server, track, std::fs::read(&req).unwrap()).await);
    let chain =
        files.write("chain.pem", &[std::fs::read(&server.root_pem).unwrap(), std::fs::read(&issuer).unwrap()].concat());
    // With -reqin alone openssl also checks that the response echoes the request's nonce.
    let (ok, text) =
        openssl(&["ocsp", "-respin", &resp, "-reqin", &req, "-CAfile", &chain, "-verify_other", &issuer, "-resp_text"]);
    assert!(ok, "{text}");
    assert!(text.contains("Response verify OK"), "{text}");
    assert!(!text.contains("Nonce Verify error") && !text.contains("WARNING: no nonce"), "{text}");
    let _ = cert;
    text
}

async fn ocsp_and_crl_show_good_revoked_and_unknown(db: Db) {
    let Some(server) = TestServer::start(db).await else { return };
    let files = Files::new(&server);
    let acct = account(&server, Track::Machine).await;
    let (good_chain, _) = issue(&server, &acct, &["a.example.test"], None).await;
    let (doomed_chain, _) = issue(&server, &acct, &["b.example.test"], None).await;
    let good = first_cert(&good_chain).to_pem().unwrap();
    let doomed = first_cert(&doomed_chain);

    let text = ocsp_check(&server, &files, Track::Machine, std::str::from_utf8(&good).unwrap(), "good").await;
    assert!(text.contains("Cert Status: good"), "{text}");
    assert!(text.contains("Next Update"), "{text}");

    // Unknown: a serial this CA never issued.
    let issuer = path(&server.root_pem.with_file_name("machine.pem"));
    let req = path(&files.dir.join("unknown-req.der"));
    assert!(openssl(&["ocsp", "-issuer", &issuer, "-serial", "0x0123456789", "-reqout", &req]).0);
    let resp = files.write("unknown-resp.der", &post_ocsp(&server, Track::Machine, std::fs::read(&req).unwrap()).await);
    let chain =
        files.write("chain.pem", &[std::fs::read(&server.root_pem).unwrap(), std::fs::read(&issuer).unwrap()].concat());
    let (ok, text) =
        openssl(&["ocsp", "-respin", &resp, "-reqin", &req, "-CAfile", &chain, "-verify_other", &issuer, "-resp_text"]);
    assert!(ok && text.contains("Cert Status: unknown"), "{text}");
    assert!(text.contains("Response verify OK"), "{text}");

    // The empty CRL verifies and lists nothing.
    let crl = files.write("before.crl", &crl_der(&server, Track::Machine).await);
    let (ok, text) = openssl(&["crl", "-inform", "DER", "-in", &crl, "-CAfile", &chain, "-verify", "-noout", "-text"]);
    assert!(ok && text.contains("verify OK"), "{text}");
    assert!(text.contains("No Revoked Certificates"), "{text}");
    assert!(text.contains("Issuing Distribution Point"), "{text}");
    let number_before = crl_number(&text);

    // Revoke, then OCSP and the CRL show it within a second.
    let der = doomed.to_der().unwrap();
    let revoked_at = Instant::now();
    acct.revoke(&RevocationRequest {
        certificate: &rustls_pki_types::CertificateDer::from(der),
        reason: Some(RevocationReason::KeyCompromise),
    })
    .await
    .unwrap();
    let doomed_pem = String::from_utf8(doomed.to_pem().unwrap()).unwrap();
    let text = ocsp_check(&server, &files, Track::Machine, &doomed_pem, "doomed").await;
    assert!(text.contains("Cert Status: revoked"), "{text}");
    assert!(text.contains("Revocation Reason: keyCompromise"), "{text}");
    let serial_hex = format!("{:X}", doomed.serial_number().to_bn().unwrap()).trim_start_matches('0').to_string();
    let text = loop {
        let crl = files.write("after.crl", &crl_der(&server, Track::Machine).await);
        let (ok, text) =
            openssl(&["crl", "-inform", "DER", "-in", &crl, "-CAfile", &chain, "-verify", "-noout", "-text"]);
        assert!(ok, "{text}");
        if text.contains(&serial_hex) {
            break text;
        }
        assert!(revoked_at.elapsed() < Duration::from_secs(1), "the CRL did not list the revocation within a second");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(text.contains("Key Compromise"), "{text}");
    assert!(crl_number(&text) > number_before, "CRL numbers only increase");
    let (this_update, next_update) = crl_updates(&text);
    assert_eq!(next_update - this_update, 24 * 3600, "nextUpdate is 24 h after thisUpdate by default");

    // A relying party checking the CRL rejects the revoked certificate, accepts the other.
    let crl_pem = files.dir.join("after.pem");
    assert!(openssl(&["crl", "-inform", "DER", "-in", &path(&files.dir.join("after.crl")), "-out", &path(&crl_pem)]).0);
    let root = path(&server.root_pem);
    let doomed_file = files.write("doomed-leaf.pem", doomed_pem.as_bytes());
    let (ok, text) = openssl(&[
        "verify",
        "-crl_check",
        "-CRLfile",
        &path(&crl_pem),
        "-CAfile",
        &root,
        "-untrusted",
        &issuer,
        &doomed_file,
    ]);
    assert!(!ok && text.contains("certificate revoked"), "{text}");
    let good_file = files.write("good-leaf.pem", &good);
    let (ok, text) = openssl(&[
        "verify",
        "-crl_check",
        "-CRLfile",
        &path(&crl_pem),
        "-CAfile",
        &root,
        "-untrusted",
        &issuer,
        &good_file,
    ]);
    assert!(ok, "{text}");

    // The GET form (RFC 6960 §A.1) answers the same.
    let req = std::fs::read(files.dir.join("good-req.der")).unwrap();
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &req);
    let encoded = b64.replace('/', "%2F").replace('+', "%2B").replace('=', "%3D");
    let res = fetch(&server, &format!("{}/ocsp/machine/{encoded}", server.public_url)).await;
    // GET is the form HTTP caches keep (RFC 5019): a signed answer says for how long.
    assert_eq!(res.headers()["cache-control"], "public, max-age=300, no-transform");
    let resp = openssl::ocsp::OcspResponse::from_der(&res.bytes().await.unwrap()).unwrap();
    assert_eq!(resp.status(), openssl::ocsp::OcspResponseStatus::SUCCESSFUL);
    server.stop().await;
}
on_both_databases!(ocsp_and_crl_show_good_revoked_and_unknown);

fn crl_number(text: &str) -> u64 {
    let line = text.lines().skip_while(|l| !l.contains("X509v3 CRL Number")).nth(1).expect("a CRL number");
    let value = line.trim();
    value.parse::<u64>().or_else(|_| u64::from_str_radix(value.trim_start_matches("0x"), 16)).unwrap()
}

fn crl_updates(text: &str) -> (i64, i64) {
    let parse = |label: &str| {
        let line = text.lines().find(|l| l.trim_start().starts_with(label)).unwrap();
        let value = line.split_once(':').unwrap().1.trim();
        let asn1 = openssl::asn1::Asn1Time::from_str_x509(&to_x509_time(value)).unwrap();
        let epoch = openssl::asn1::Asn1Time::from_unix(0).unwrap();
        let d = epoch.diff(&asn1).unwrap();
        i64::from(d.days) * 86400 + i64::from(d.secs)
    };
    (parse("Last Update"), parse("Next Update"))
}

/// "Nov 23 12:00:00 2026 GMT" → "20261123120000Z".
fn to_x509_time(text: &str) -> String {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        .iter()
        .position(|m| *m == parts[0])
        .unwrap()
        + 1;
    format!("{}{month:02}{:02}{}Z", parts[3], parts[1].parse::<u32>().unwrap(), parts[2].replace(':', ""))
}

fn response_status(der: &[u8]) -> openssl::ocsp::OcspResponseStatus {
    openssl::ocsp::OcspResponse::from_der(der).expect("a DER OCSPResponse").status()
}

async fn bad_ocsp_requests_get_ocsp_errors(db: Db) {
    use openssl::ocsp::OcspResponseStatus as S;
    let Some(server) = TestServer::start(db).await else { return };
    let files = Files::new(&server);
    // Random bytes.
    assert_eq!(
        response_status(&post_ocsp(&server, Track::Machine, (0..200u8).map(|i| i.wrapping_mul(37)).collect()).await),
        S::MALFORMED_REQUEST
    );
    // A request about the machine issuer, truncated, asked of the human responder, made with
    // an unknown hash algorithm, and oversized.
    let issuer = path(&server.root_pem.with_file_name("machine.pem"));
    let req = path(&files.dir.join("req.der"));
    assert!(openssl(&["ocsp", "-issuer", &issuer, "-serial", "0x42", "-reqout", &req]).0);
    let request = std::fs::read(&req).unwrap();
    assert_eq!(
        response_status(&post_ocsp(&server, Track::Machine, request[..request.len() - 3].to_vec()).await),
        S::MALFORMED_REQUEST
    );
    assert_eq!(response_status(&post_ocsp(&server, Track::Human, request.clone()).await), S::UNAUTHORIZED);
    let md5 = path(&files.dir.join("md5.der"));
    assert!(openssl(&["ocsp", "-md5", "-issuer", &issuer, "-serial", "0x42", "-reqout", &md5]).0);
    assert_eq!(
        response_status(&post_ocsp(&server, Track::Machine, std::fs::read(&md5).unwrap()).await),
        S::MALFORMED_REQUEST
    );
    let mut huge = request.clone();
    huge.resize(64 * 1024, 0);
    assert_eq!(response_status(&post_ocsp(&server, Track::Machine, huge).await), S::MALFORMED_REQUEST);
    // An empty body, and a GET whose path is not base64.
    assert_eq!(response_status(&post_ocsp(&server, Track::Machine, Vec::new()).await), S::MALFORMED_REQUEST);
    let res = fetch(&server, &format!("{}/ocsp/machine/!!!not-base64", server.public_url)).await;
    assert_eq!(response_status(&res.bytes().await.unwrap()), S::MALFORMED_REQUEST);
    // After all that, the responder still answers a good request.
    assert_eq!(response_status(&post_ocsp(&server, Track::Machine, request).await), S::SUCCESSFUL);
    server.stop().await;
}
on_both_databases!(bad_ocsp_requests_get_ocsp_errors);

async fn delegated_responder_and_operator_revocation(db: Db) {
    let Some(server) = TestServer::start_with(db, |s| {
        open_human_track(s);
        s.revocation.ocsp_signer = OcspSigner::Delegated;
    })
    .await
    else {
        return;
    };
    let files = Files::new(&server);
    let acct = account(&server, Track::Human).await;
    let (chain, _) = issue(&server, &acct, &["b.example.test"], None).await;
    let leaf = first_cert(&chain);
    let pem = String::from_utf8(leaf.to_pem().unwrap()).unwrap();
    let text = ocsp_check(&server, &files, Track::Human, &pem, "human").await;
    assert!(text.contains("Cert Status: good"), "{text}");
    assert!(text.contains("OCSP Signing"), "the delegated responder certificate is included: {text}");
    assert!(text.contains("OCSP No Check"), "{text}");

    // `dualca revoke`, the operator's command, against the same data.
    let serial = dualca_ca::ids::hex(&leaf.serial_number().to_bn().unwrap().to_vec());
    let revoke = ["revoke", &serial, "--reason", "affiliationChanged", "--operator", "test-operator"];
    let (ok, stdout, stderr) = server.cli("test", &revoke);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("revoked on the human track"), "{stdout}");
    let text = ocsp_check(&server, &files, Track::Human, &pem, "human-revoked").await;
    assert!(text.contains("Cert Status: revoked") && text.contains("affiliationChanged"), "{text}");
    let crl = files.write("human.crl", &crl_der(&server, Track::Human).await);
    let (_, text) = openssl(&["crl", "-inform", "DER", "-in", &crl, "-noout", "-text"]);
    assert!(text.contains(&format!("{:X}", leaf.serial_number().to_bn().unwrap())), "{text}");
    // Revoking again is refused, and the audit names the operator.
    let (again, _, stderr) = server.cli("test", &revoke);
    assert!(!again, "{stderr}");
    let record = server.ca.certificate(Track::Human, &serial).unwrap();
    assert_eq!(record.revocation_reason, Some(3));
    server.stop().await;
}
on_both_databases!(delegated_responder_and_operator_revocation);

async fn short_lived_certificates_may_omit_revocation_urls(db: Db) {
    let Some(server) = TestServer::start_with(db, |s| {
        open_human_track(s);
        s.revocation.omit_urls_for_short_lived = true;
    })
    .await
    else {
        return;
    };
    let machine = account(&server, Track::Machine).await;
    let (chain, _) = issue(&server, &machine, &["a.example.test"], Some("week")).await;
    let text = String::from_utf8(first_cert(&chain).to_text().unwrap()).unwrap();
    assert!(!text.contains("CRL Distribution Points") && !text.contains("OCSP - URI"), "{text}");
    assert!(text.contains("CA Issuers - URI"), "{text}");
    let human = account(&server, Track::Human).await;
    let (chain, _) = issue(&server, &human, &["b.example.test"], None).await;
    let text = String::from_utf8(first_cert(&chain).to_text().unwrap()).unwrap();
    assert!(text.contains("CRL Distribution Points") && text.contains("OCSP - URI"), "{text}");
    server.stop().await;
}
on_both_databases!(short_lived_certificates_may_omit_revocation_urls);
