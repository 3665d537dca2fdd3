//! OCSP under load (issue 7's "10 000 responses/s for cached statuses"): after the flows, the
//! generator asks the CA's OCSP responder about one certificate a flow was issued, `requests`
//! times, `concurrency` at a time, each a POST of the same DER request (RFC 6960 Appendix A.1),
//! so that every answer after the first is the CA's cached one.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use openssl::hash::MessageDigest;
use openssl::ocsp::{OcspCertId, OcspCertStatus, OcspRequest, OcspResponse, OcspResponseStatus};
use openssl::x509::X509;
use reqwest::header::{HeaderValue, CONTENT_TYPE};
use serde::Serialize;
use url::Url;

use crate::acme::ensure_loopback;
use crate::stats::{self, LatencySummary};

/// What the OCSP phase measured.
#[derive(Serialize)]
pub struct OcspReport {
    /// The responder, from the certificate's Authority Information Access.
    pub url: String,
    pub requests: u64,
    pub ok: u64,
    pub failed: u64,
    /// Failed requests by cause.
    pub errors: BTreeMap<String, u64>,
    pub elapsed_s: f64,
    pub responses_per_s: f64,
    pub latency: Option<LatencySummary>,
}

/// The request for `chain`'s leaf (its issuer is the next certificate), and the responder URL
/// the leaf names.
pub struct Target {
    url: Url,
    /// The DER request, shared by every POST without a copy.
    request: bytes::Bytes,
    cert_id: OcspCertId,
}

impl Target {
    pub fn of_chain(pem_chain: &[u8]) -> Result<Target> {
        let chain = X509::stack_from_pem(pem_chain).context("the certificate download is not PEM")?;
        let [leaf, issuer, ..] = chain.as_slice() else {
            bail!("the certificate download has no issuer after the leaf");
        };
        let responders = leaf.ocsp_responders().context("the leaf's Authority Information Access")?;
        let url = responders.iter().next().ok_or_else(|| anyhow!("the leaf names no OCSP responder"))?;
        let url = Url::parse(url).with_context(|| format!("OCSP responder {url:?}"))?;
        ensure_loopback(&url).map_err(|e| anyhow!("{e}"))?;
        let id = || OcspCertId::from_cert(MessageDigest::sha1(), leaf, issuer);
        let mut request = OcspRequest::new()?;
        request.add_id(id()?)?;
        Ok(Target { url, request: request.to_der()?.into(), cert_id: id()? })
    }

    /// Checks a response fully: successful, and `good` for the leaf. The signature is not
    /// checked here (the e2e tests do, with OpenSSL's verifier and the CA's chain).
    fn check(&self, der: &[u8]) -> Result<(), String> {
        let response = OcspResponse::from_der(der).map_err(|e| format!("not an OCSP response: {e}"))?;
        if response.status() != OcspResponseStatus::SUCCESSFUL {
            return Err(format!("response status {:?}", response.status()));
        }
        let basic = response.basic().map_err(|e| format!("no basic response: {e}"))?;
        let status = basic.find_status(&self.cert_id).ok_or("no status for the leaf")?;
        if status.status != OcspCertStatus::GOOD {
            return Err(format!("the leaf's status is {:?}, not good", status.status));
        }
        Ok(())
    }
}

/// Sends the requests and times each. A response is counted as ok when it is HTTP 200 with
/// `application/ocsp-response` and is either the bytes of the last one checked (a cached
/// answer) or passes the full check itself.
pub async fn run(http: &reqwest::Client, target: Target, requests: u64, concurrency: usize) -> OcspReport {
    let target = Arc::new(target);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (http, target, next) = (http.clone(), target.clone(), next.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors: BTreeMap<String, u64> = BTreeMap::new();
                let mut checked: Option<bytes::Bytes> = None;
                while next.fetch_add(1, Ordering::Relaxed) < requests {
                    let sent = Instant::now();
                    match one(&http, &target, &mut checked).await {
                        Ok(()) => latencies.push(stats::micros(sent.elapsed())),
                        Err(cause) => *errors.entry(cause).or_default() += 1,
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let (mut latencies, mut errors) = (Vec::new(), BTreeMap::new());
    for task in tasks {
        match task.await {
            Ok((l, e)) => {
                latencies.extend(l);
                for (cause, n) in e {
                    *errors.entry(cause).or_default() += n;
                }
            }
            Err(e) => *errors.entry(format!("task: {e}")).or_default() += 1,
        }
    }
    let elapsed = started.elapsed();
    let ok = latencies.len() as u64;
    OcspReport {
        url: target.url.to_string(),
        requests,
        ok,
        failed: requests - ok,
        errors,
        elapsed_s: elapsed.as_secs_f64(),
        responses_per_s: stats::rate(ok, elapsed),
        latency: LatencySummary::of(&mut latencies),
    }
}

async fn one(http: &reqwest::Client, target: &Target, checked: &mut Option<bytes::Bytes>) -> Result<(), String> {
    let response = http
        .post(target.url.clone())
        .header(CONTENT_TYPE, "application/ocsp-request")
        .body(target.request.clone())
        .send()
        .await
        .map_err(|e| format!("transport: {}", if e.is_timeout() { "timeout" } else { "error" }))?;
    let status = response.status();
    let kind = response.headers().get(CONTENT_TYPE).cloned();
    let body = response.bytes().await.map_err(|_| "transport: reading the body".to_string())?;
    if !status.is_success() {
        return Err(format!("HTTP {}", status.as_u16()));
    }
    if kind.as_ref() != Some(&HeaderValue::from_static("application/ocsp-response")) {
        return Err(format!("content type {kind:?}"));
    }
    if checked.as_ref() != Some(&body) {
        target.check(&body)?;
        *checked = Some(body);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain of one, or a leaf whose responder is not on loopback, is refused before any
    /// request is made.
    #[test]
    fn the_target_needs_an_issuer_and_a_loopback_responder() {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, &ca_key);
        let leaf_for = |responder: &str| {
            // Authority Information Access (RFC 5280 §4.2.2.1) with one OCSP access
            // description, DER by hand: SEQUENCE { SEQUENCE { id-ad-ocsp, [6] uri } }.
            let oid = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01];
            let mut uri = vec![0x86, responder.len() as u8];
            uri.extend_from_slice(responder.as_bytes());
            let mut description = vec![0x30, (oid.len() + uri.len()) as u8];
            description.extend_from_slice(&oid);
            description.extend_from_slice(&uri);
            let mut aia = vec![0x30, description.len() as u8];
            aia.extend_from_slice(&description);
            let mut params = rcgen::CertificateParams::new(vec!["leaf.localhost".to_string()]).unwrap();
            params.custom_extensions.push(rcgen::CustomExtension::from_oid_content(&[1, 3, 6, 1, 5, 5, 7, 1, 1], aia));
            params.signed_by(&rcgen::KeyPair::generate().unwrap(), &issuer).unwrap().pem()
        };

        let alone = leaf_for("https://localhost:14000/ocsp/machine");
        let error = Target::of_chain(alone.as_bytes()).err().expect("no issuer").to_string();
        assert_eq!(error, "the certificate download has no issuer after the leaf");

        let remote = format!("{}{}", leaf_for("https://ocsp.example.com/ocsp/machine"), ca.pem());
        let error = Target::of_chain(remote.as_bytes()).err().expect("not loopback").to_string();
        assert!(error.contains("is not an http(s) URL on loopback"), "{error}");

        let good = format!("{}{}", leaf_for("https://localhost:14000/ocsp/machine"), ca.pem());
        let target = Target::of_chain(good.as_bytes()).unwrap();
        assert_eq!(target.url.as_str(), "https://localhost:14000/ocsp/machine");
        assert!(OcspRequest::from_der(&target.request).is_ok());
    }
}
