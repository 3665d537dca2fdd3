//! The load generator (`dualca-bench`, through its library) against the real server: the
//! flows it counts are real issuances, and what it reports (per endpoint, the warm-up, failures
//! by problem type) is what happened. compare.sh and BENCHMARKS.md rest on those numbers.

use base64::Engine;
use clap::Parser;
use dualca_ca::Track;
use serde_json::Value;

use crate::common::{free_loopback_port, Db, TestServer};
use crate::on_both_databases;

/// The generator's arguments: the common ones for this server, then `flags`.
fn args(server: &TestServer, http01_port: u16, flags: &[String]) -> dualca_bench::Args {
    let mut argv = vec![
        "dualca-bench".to_string(),
        format!("--directory={}", server.directory(Track::Machine)),
        format!("--ca-root={}", server.root_pem.display()),
        format!("--http01-port={http01_port}"),
        "--timeout-s=120".into(),
        "--request-timeout-s=20".into(),
    ];
    argv.extend_from_slice(flags);
    dualca_bench::Args::try_parse_from(&argv).expect("the generator's flags")
}

/// Runs the generator with these flags after the common ones; returns its report as JSON.
async fn bench(server: &TestServer, http01_port: u16, flags: &[String]) -> Value {
    let report = dualca_bench::run(&args(server, http01_port, flags)).await.expect("the generator runs");
    serde_json::to_value(&report).unwrap()
}

async fn the_generator_counts_real_issuances(db: Db) {
    let port = free_loopback_port();
    let Some(server) = TestServer::start_with(db, |s| s.validation.http_port = port).await else { return };
    let mut flags = vec!["--flows=12".to_string(), "--concurrency=3".to_string()];
    // Two EAB keys, handed out in turn.
    for _ in 0..2 {
        let (kid, hmac) = server.eab();
        flags.push(format!("--eab-kid={kid}"));
        flags.push(format!("--eab-hmac={}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hmac)));
    }
    // Then OCSP about the first certificate issued, 40 requests, 3 at a time.
    flags.push("--ocsp-requests=40".to_string());
    let report = bench(&server, port, &flags).await;

    assert_eq!(report["succeeded"], 12, "{report:#}");
    assert_eq!(report["failed"], 0, "{report:#}");
    assert_eq!(report["errors"], serde_json::json!({}));
    assert_eq!(report["bad_nonce_retries"], 0);
    assert!(report["issuances_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(report["flow_latency"]["count"], 12);
    // Each worker's connection and first nonce came before the clock: newNonce is not among
    // the measured requests, and every flow's own requests are.
    assert_eq!(report["warm_up"]["count"], 3, "{report:#}");
    let endpoints = report["endpoints"].as_object().unwrap();
    assert!(!endpoints.contains_key("newNonce"), "{report:#}");
    for endpoint in ["newAccount", "newOrder", "authz", "challenge", "finalize", "certificate"] {
        assert_eq!(endpoints[endpoint]["count"], 12, "{endpoint}: {report:#}");
    }
    // The lean flow (the default, as lego): dualca answers the challenge `valid` and the
    // finalize with the valid order, so nothing is polled.
    assert_eq!(report["settings"]["polls"], "lean", "{report:#}");
    assert!(!endpoints.contains_key("poll"), "{report:#}");
    assert!(report["http01_served"].as_u64().unwrap() >= 12, "{report:#}");
    // Every OCSP request was answered `good` (the first checked in full, the rest byte for
    // byte the same, or checked in full too), by the responder the certificate names.
    let ocsp = &report["ocsp"];
    assert_eq!(ocsp["url"], format!("{}/ocsp/machine", server.public_url), "{report:#}");
    assert_eq!(
        (ocsp["requests"].as_u64(), ocsp["ok"].as_u64(), ocsp["failed"].as_u64()),
        (Some(40), Some(40), Some(0))
    );
    assert_eq!(ocsp["errors"], serde_json::json!({}));
    assert_eq!(ocsp["latency"]["count"], 40);
    assert!(ocsp["responses_per_s"].as_f64().unwrap() > 0.0, "{report:#}");

    // What the generator counted, the CA holds: twelve certificates of the test fleet, each
    // for 127.0.0.1.
    let fleet = server.ca.asset("test-fleet").unwrap();
    let filter = dualca_ca::CertificateFilter { asset: Some(fleet.id.clone()), ..Default::default() };
    let issued = server.ca.search_certificates(Track::Machine, &filter, None, 100).unwrap();
    assert_eq!(issued.len(), 12, "{issued:?}");
    assert!(issued.iter().all(|c| c.identifiers.iter().any(|i| i.value == "127.0.0.1")), "{issued:?}");
    server.stop().await;
}
on_both_databases!(the_generator_counts_real_issuances);

/// `--polls every` reads each authorization after its challenge and the order until `ready`,
/// whatever the answers said: two polls per flow more than the lean flow on dualca.
async fn every_poll_adds_the_authorization_and_the_ready_order(db: Db) {
    let port = free_loopback_port();
    let Some(server) = TestServer::start_with(db, |s| s.validation.http_port = port).await else { return };
    let (kid, hmac) = server.eab();
    let flags = [
        "--flows=3".to_string(),
        "--concurrency=2".to_string(),
        "--polls=every".to_string(),
        format!("--eab-kid={kid}"),
        format!("--eab-hmac={}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hmac)),
    ];
    let report = bench(&server, port, &flags).await;
    assert_eq!((report["succeeded"].as_u64(), report["failed"].as_u64()), (Some(3), Some(0)), "{report:#}");
    assert_eq!(report["settings"]["polls"], "every", "{report:#}");
    let endpoints = report["endpoints"].as_object().unwrap();
    assert_eq!(endpoints["poll"]["count"], 6, "{report:#}");
    for endpoint in ["newAccount", "newOrder", "authz", "challenge", "finalize", "certificate"] {
        assert_eq!(endpoints[endpoint]["count"], 3, "{endpoint}: {report:#}");
    }
    server.stop().await;
}
on_both_databases!(every_poll_adds_the_authorization_and_the_ready_order);

async fn the_generator_reports_failures_by_problem_type(db: Db) {
    let port = free_loopback_port();
    let Some(server) = TestServer::start_with(db, |s| s.validation.http_port = port).await else { return };
    // No EAB key: the machine track refuses every newAccount.
    let report = bench(&server, port, &["--flows=4".to_string(), "--concurrency=2".to_string()]).await;
    assert_eq!(report["succeeded"], 0, "{report:#}");
    assert_eq!(report["failed"], 4, "{report:#}");
    assert_eq!(report["errors"], serde_json::json!({"externalAccountRequired": 4}), "{report:#}");
    assert_eq!(report["ocsp"], Value::Null, "no OCSP phase unless asked: {report:#}");
    // An OCSP phase needs a certificate: with none issued the run fails and says why.
    let flags = ["--flows=1".to_string(), "--ocsp-requests=5".to_string()];
    let error = dualca_bench::run(&args(&server, port, &flags)).await.err().expect("no certificate, no OCSP phase");
    assert_eq!(error.to_string(), "--ocsp-requests: no flow was issued a certificate");
    server.stop().await;
}
on_both_databases!(the_generator_reports_failures_by_problem_type);
