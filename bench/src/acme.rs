//! A thin RFC 8555 client that times every request it makes. It does one thing, the issuance
//! flow, and does it the way a careful client would: a fresh nonce from every response, a
//! retry on `badNonce` (§6.5), POST-as-GET for every fetch (§6.3), Retry-After honoured while
//! polling (§7.5.1, §7.4), and the order checked for `ready` before it is finalized.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use reqwest::StatusCode;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use url::{Host, Url};

use crate::csr::{self, Identifier, KeyType};
use crate::http01::Responder;
use crate::stats::{Endpoint, Samples};

const PROBLEM_PREFIX: &str = "urn:ietf:params:acme:error:";
const BAD_NONCE_RETRIES: u32 = 3;

#[derive(Debug)]
pub enum FlowError {
    /// A problem document (RFC 7807), or an error status without one.
    Problem { kind: String, detail: String },
    /// The request did not get an answer: connection, TLS, request timeout.
    Transport(String),
    /// An answer that does not follow RFC 8555, or a state the flow cannot go on from.
    Protocol(String),
}

impl FlowError {
    /// The key failures are counted under: the problem type without its ACME prefix, or a
    /// bracketed word for failures that are not problem documents.
    pub fn cause(&self) -> String {
        match self {
            FlowError::Problem { kind, .. } => kind.strip_prefix(PROBLEM_PREFIX).unwrap_or(kind).to_string(),
            FlowError::Transport(_) => "(transport)".into(),
            FlowError::Protocol(_) => "(protocol)".into(),
        }
    }
}

impl std::fmt::Display for FlowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FlowError::Problem { kind, detail } => write!(f, "{kind}: {detail}"),
            FlowError::Transport(e) | FlowError::Protocol(e) => f.write_str(e),
        }
    }
}

fn protocol(text: impl Into<String>) -> FlowError {
    FlowError::Protocol(text.into())
}

fn transport(e: &reqwest::Error) -> FlowError {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    FlowError::Transport(text)
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Every URL the generator asks for must be on this machine.
pub fn ensure_loopback(url: &Url) -> Result<(), FlowError> {
    let loopback = match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
        None => false,
    };
    if loopback && matches!(url.scheme(), "https" | "http") {
        Ok(())
    } else {
        Err(protocol(format!("{url} is not an http(s) URL on loopback; the generator only talks to this machine")))
    }
}

/// Delta-seconds only; an HTTP-date (RFC 9110 §10.2.3) is ignored and the floor applies.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Which polls a flow makes when the answers before them already tell what a poll would.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Polls {
    /// As lego does: a challenge answered `valid` makes its authorization valid (RFC 8555
    /// §7.1.6), so the authorization is not polled; finalize follows as soon as every
    /// authorization is valid, without polling the order for `ready`. A server that has not
    /// made the order ready by then answers `orderNotReady`, which fails the flow under that
    /// cause, as it fails lego's.
    Lean,
    /// Every authorization polled after its challenge and the order polled until `ready`
    /// before finalize, whatever the answers said: the same requests per flow for every
    /// server. What the generator did before the thirteenth run (BENCHMARKS.md).
    Every,
}

/// Whether the authorization is polled after its challenge's answer. With [`Polls::Every`] it
/// always is; with [`Polls::Lean`] only when the answer is not yet `valid`.
pub fn polls_authorization(polls: Polls, challenge_status: &str) -> bool {
    polls == Polls::Every || first_poll_waits(challenge_status)
}

/// Whether the first poll of an authorization waits after the challenge's answer. A challenge
/// the server answered `valid` (it validated within the request) needs no wait: lego's
/// `validate` returns at once then. A `pending` or `processing` answer waits as Retry-After
/// says.
pub fn first_poll_waits(challenge_status: &str) -> bool {
    challenge_status != "valid"
}

/// How long to wait before the next poll: what the server asked for, but at least the floor
/// and at most the cap (so a server cannot stall a bounded run for long).
pub fn poll_wait(retry_after: Option<Duration>, floor: Duration, cap: Duration) -> Duration {
    retry_after.unwrap_or(Duration::ZERO).min(cap).max(floor)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Directory {
    pub new_nonce: String,
    pub new_account: String,
    pub new_order: String,
}

pub struct Eab {
    pub kid: String,
    pub hmac_key: Vec<u8>,
}

pub struct Settings {
    pub identifier: Identifier,
    pub key_type: KeyType,
    /// EAB credentials, taken in turn by new accounts; none for a CA that requires none.
    pub eab: Vec<Eab>,
    pub poll_floor: Duration,
    pub retry_after_cap: Duration,
    pub max_polls: u32,
    pub polls: Polls,
}

/// What every flow shares: the HTTP client (and its connection pool), the directory, the
/// responder and the settings.
pub struct Client {
    pub http: reqwest::Client,
    pub directory: Directory,
    pub responder: Responder,
    pub settings: Settings,
    rng: SystemRandom,
    /// The first certificate chain a flow downloaded, for the OCSP phase.
    pub first_chain: std::sync::OnceLock<bytes::Bytes>,
    /// How many new accounts took an EAB key so far: the next takes key `n % len`.
    eab_turn: std::sync::atomic::AtomicUsize,
}

impl Client {
    pub fn new(http: reqwest::Client, directory: Directory, responder: Responder, settings: Settings) -> Client {
        Client {
            http,
            directory,
            responder,
            settings,
            rng: SystemRandom::new(),
            first_chain: Default::default(),
            eab_turn: Default::default(),
        }
    }

    /// The EAB credentials for the next new account, in turn; none without any.
    fn next_eab(&self) -> Option<&Eab> {
        let keys = &self.settings.eab;
        (!keys.is_empty()).then(|| &keys[self.eab_turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % keys.len()])
    }
}

/// An ES256 account key (RFC 7518 §3.4) with its JWK and RFC 7638 thumbprint.
pub struct AccountKey {
    pair: EcdsaKeyPair,
    jwk: Value,
    thumbprint: String,
}

impl AccountKey {
    pub fn generate(rng: &SystemRandom) -> Result<AccountKey, FlowError> {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, rng)
            .map_err(|_| protocol("cannot generate an account key"))?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), rng)
            .map_err(|_| protocol("cannot load the account key"))?;
        // An uncompressed point: 0x04 || x || y.
        let point = pair.public_key().as_ref();
        let (x, y) = (b64(&point[1..33]), b64(&point[33..65]));
        // The thumbprint hashes the required members in lexicographic order, no whitespace.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let thumbprint = b64(ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes()).as_ref());
        let jwk = json!({"crv": "P-256", "kty": "EC", "x": x, "y": y});
        Ok(AccountKey { pair, jwk, thumbprint })
    }

    pub fn key_authorization(&self, token: &str) -> String {
        format!("{token}.{}", self.thumbprint)
    }
}

pub struct Account {
    key: AccountKey,
    url: String,
}

enum Signer<'a> {
    Jwk(&'a AccountKey),
    Kid(&'a Account),
}

impl Signer<'_> {
    fn key(&self) -> &AccountKey {
        match self {
            Signer::Jwk(key) => key,
            Signer::Kid(account) => &account.key,
        }
    }
}

struct Reply {
    location: Option<String>,
    retry_after: Option<Duration>,
    body: bytes::Bytes,
}

impl Reply {
    fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T, FlowError> {
        serde_json::from_slice(&self.body).map_err(|e| protocol(format!("{what}: unexpected body: {e}")))
    }
}

#[derive(Deserialize)]
struct ProblemDocument {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    detail: String,
}

impl ProblemDocument {
    fn into_error(self, fallback: &str) -> FlowError {
        if self.kind.is_empty() {
            protocol(fallback.to_string())
        } else {
            FlowError::Problem { kind: self.kind, detail: self.detail }
        }
    }
}

#[derive(Deserialize)]
struct Order {
    status: String,
    #[serde(default)]
    authorizations: Vec<String>,
    finalize: String,
    certificate: Option<String>,
    error: Option<ProblemDocument>,
}

#[derive(Deserialize)]
struct Authorization {
    status: String,
    #[serde(default)]
    challenges: Vec<Challenge>,
}

#[derive(Deserialize)]
struct Challenge {
    #[serde(rename = "type")]
    kind: String,
    url: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    status: String,
    error: Option<ProblemDocument>,
}

fn header(headers: &HeaderMap, name: impl reqwest::header::AsHeaderName) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// One worker's connection to the CA: its current nonce and what it measured. Requests within
/// a session are sequential, so one nonce is always enough.
pub struct Session {
    client: Arc<Client>,
    nonce: Option<String>,
    pub samples: Samples,
}

impl Session {
    pub fn new(client: Arc<Client>) -> Session {
        Session { client, nonce: None, samples: Samples::default() }
    }

    /// Opens this session's connection (the pool's, while others are opened at once) and takes
    /// the first nonce, so that the first flow starts as every later one does.
    pub async fn warm_up(&mut self) -> Result<(), FlowError> {
        self.nonce = Some(self.new_nonce().await?);
        Ok(())
    }

    async fn new_nonce(&mut self) -> Result<String, FlowError> {
        let url = Url::parse(&self.client.directory.new_nonce).map_err(|e| protocol(format!("newNonce URL: {e}")))?;
        ensure_loopback(&url)?;
        let started = Instant::now();
        let response = self.client.http.head(url).send().await.map_err(|e| transport(&e))?;
        self.samples.record(Endpoint::NewNonce, started.elapsed());
        if !response.status().is_success() {
            return Err(protocol(format!("newNonce answered HTTP {}", response.status().as_u16())));
        }
        header(response.headers(), "replay-nonce").ok_or_else(|| protocol("newNonce answered without Replay-Nonce"))
    }

    fn jws(&self, signer: &Signer<'_>, url: &str, nonce: &str, payload: Option<&Value>) -> Result<Vec<u8>, FlowError> {
        let mut protected = json!({"alg": "ES256", "nonce": nonce, "url": url});
        match signer {
            Signer::Jwk(key) => protected["jwk"] = key.jwk.clone(),
            Signer::Kid(account) => protected["kid"] = Value::String(account.url.clone()),
        }
        let protected = b64(protected.to_string().as_bytes());
        // POST-as-GET has an empty payload, not an empty object.
        let payload = payload.map(|p| b64(p.to_string().as_bytes())).unwrap_or_default();
        let signature = signer
            .key()
            .pair
            .sign(&self.client.rng, format!("{protected}.{payload}").as_bytes())
            .map_err(|_| protocol("cannot sign"))?;
        Ok(json!({"protected": protected, "payload": payload, "signature": b64(signature.as_ref())})
            .to_string()
            .into_bytes())
    }

    /// A signed POST to `url`, timed under `endpoint` (every attempt, a retried one too).
    async fn post(
        &mut self,
        endpoint: Endpoint,
        url: &str,
        payload: Option<&Value>,
        signer: Signer<'_>,
    ) -> Result<Reply, FlowError> {
        let target = Url::parse(url).map_err(|e| protocol(format!("{} URL {url:?}: {e}", endpoint.name())))?;
        ensure_loopback(&target)?;
        let accept = if endpoint == Endpoint::Certificate { "application/pem-certificate-chain" } else { "*/*" };
        let mut attempt = 0;
        loop {
            let nonce = match self.nonce.take() {
                Some(nonce) => nonce,
                None => self.new_nonce().await?,
            };
            let body = self.jws(&signer, url, &nonce, payload)?;
            let started = Instant::now();
            let response = self
                .client
                .http
                .post(target.clone())
                .header(CONTENT_TYPE, "application/jose+json")
                .header(ACCEPT, accept)
                .body(body)
                .send()
                .await
                .map_err(|e| transport(&e))?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await.map_err(|e| transport(&e))?;
            self.samples.record(endpoint, started.elapsed());
            self.nonce = header(&headers, "replay-nonce");
            if status.is_success() {
                return Ok(Reply {
                    location: header(&headers, LOCATION),
                    retry_after: header(&headers, RETRY_AFTER).as_deref().and_then(parse_retry_after),
                    body,
                });
            }
            let error = problem_of(status, &body);
            if error.cause() == "badNonce" && attempt < BAD_NONCE_RETRIES {
                attempt += 1;
                self.samples.bad_nonce_retries += 1;
                continue;
            }
            return Err(error);
        }
    }

    /// newAccount (RFC 8555 §7.3), with an external account binding (§7.3.4) when the
    /// settings have EAB credentials.
    pub async fn new_account(&mut self) -> Result<Account, FlowError> {
        let key = AccountKey::generate(&self.client.rng)?;
        let url = self.client.directory.new_account.clone();
        let mut payload = json!({"termsOfServiceAgreed": true});
        if let Some(eab) = self.client.next_eab() {
            let protected = b64(json!({"alg": "HS256", "kid": eab.kid, "url": url}).to_string().as_bytes());
            let jwk = b64(key.jwk.to_string().as_bytes());
            let mac_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &eab.hmac_key);
            let tag = ring::hmac::sign(&mac_key, format!("{protected}.{jwk}").as_bytes());
            payload["externalAccountBinding"] =
                json!({"protected": protected, "payload": jwk, "signature": b64(tag.as_ref())});
        }
        let reply = self.post(Endpoint::NewAccount, &url, Some(&payload), Signer::Jwk(&key)).await?;
        let url = reply.location.ok_or_else(|| protocol("newAccount answered without a Location"))?;
        Ok(Account { key, url })
    }

    /// One issuance, from newOrder (and newAccount, unless `account` is given) to the
    /// downloaded certificate.
    pub async fn issue(&mut self, account: Option<&Account>) -> Result<(), FlowError> {
        let fresh;
        let account = match account {
            Some(account) => account,
            None => {
                fresh = self.new_account().await?;
                &fresh
            }
        };
        let client = self.client.clone();
        let identifier = &client.settings.identifier;
        let payload = json!({"identifiers": [{"type": identifier.kind(), "value": identifier.value()}]});
        let reply =
            self.post(Endpoint::NewOrder, &client.directory.new_order, Some(&payload), Signer::Kid(account)).await?;
        let order_url = reply.location.clone().ok_or_else(|| protocol("newOrder answered without a Location"))?;
        let order: Order = reply.json("newOrder")?;
        if order.authorizations.is_empty() {
            return Err(protocol("newOrder answered an order without authorizations"));
        }
        for authz_url in &order.authorizations {
            self.authorize(account, authz_url).await?;
        }
        // Every authorization is valid now, so the order is ready (RFC 8555 §7.1.6).
        let finalize_url = match client.settings.polls {
            Polls::Lean => order.finalize,
            Polls::Every => self.poll_order(account, &order_url, "ready", None, true).await?.finalize,
        };

        let (key_type, identifier) = (client.settings.key_type, identifier.clone());
        // An EC key and its CSR take tens of microseconds: made in place. An RSA key takes tens
        // of milliseconds, which would stall the other flows on this thread.
        let made = if key_type == KeyType::Rsa2048 {
            tokio::task::spawn_blocking(move || csr::generate(key_type, &identifier))
                .await
                .map_err(|e| protocol(format!("CSR task: {e}")))?
        } else {
            csr::generate(key_type, &identifier)
        };
        let (spki, csr) = made.map_err(|e| protocol(format!("CSR: {e:#}")))?;
        let payload = json!({"csr": b64(&csr)});
        let reply = self.post(Endpoint::Finalize, &finalize_url, Some(&payload), Signer::Kid(account)).await?;
        let mut order: Order = reply.json("finalize")?;
        if order.status != "valid" {
            order = self.poll_order(account, &order_url, "valid", reply.retry_after, false).await?;
        }
        let certificate_url = order.certificate.ok_or_else(|| protocol("a valid order without a certificate URL"))?;
        let reply = self.post(Endpoint::Certificate, &certificate_url, None, Signer::Kid(account)).await?;
        match csr::leaf_matches_key(&reply.body, &spki) {
            Ok(true) => {
                if self.client.first_chain.get().is_none() {
                    let _ = self.client.first_chain.set(reply.body.clone());
                }
                Ok(())
            }
            Ok(false) => Err(protocol("the certificate does not carry the CSR's key")),
            Err(e) => Err(protocol(format!("certificate: {e:#}"))),
        }
    }

    /// Makes one authorization valid with http-01: publish the key authorization, tell the
    /// server to validate, poll the authorization (unless the answer said it is valid and
    /// `--polls lean`).
    async fn authorize(&mut self, account: &Account, authz_url: &str) -> Result<(), FlowError> {
        let reply = self.post(Endpoint::Authz, authz_url, None, Signer::Kid(account)).await?;
        let authz: Authorization = reply.json("authorization")?;
        match authz.status.as_str() {
            "valid" => {
                self.samples.authz_already_valid += 1;
                return Ok(());
            }
            "pending" => {}
            other => return Err(protocol(format!("a new order's authorization is {other:?}"))),
        }
        let challenge = authz
            .challenges
            .into_iter()
            .find(|c| c.kind == "http-01")
            .ok_or_else(|| protocol("the authorization offers no http-01 challenge"))?;
        if challenge.token.is_empty()
            || !challenge.token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(protocol(format!("http-01 token {:?} is not base64url", challenge.token)));
        }
        let _published =
            self.client.responder.publish(&challenge.token, account.key.key_authorization(&challenge.token));
        let reply = self.post(Endpoint::Challenge, &challenge.url, Some(&json!({})), Signer::Kid(account)).await?;
        let answered: Challenge = reply.json("challenge")?;
        if answered.status == "invalid" {
            return Err(answered.error.map_or_else(
                || protocol("the challenge became invalid"),
                |p| p.into_error("the challenge became invalid"),
            ));
        }
        if !polls_authorization(self.client.settings.polls, &answered.status) {
            return Ok(());
        }
        let mut retry_after = reply.retry_after;
        let wait_first = first_poll_waits(&answered.status);
        for poll in 0..self.client.settings.max_polls {
            if poll > 0 || wait_first {
                let settings = &self.client.settings;
                tokio::time::sleep(poll_wait(retry_after, settings.poll_floor, settings.retry_after_cap)).await;
            }
            let reply = self.post(Endpoint::Poll, authz_url, None, Signer::Kid(account)).await?;
            let authz: Authorization = reply.json("authorization")?;
            match authz.status.as_str() {
                "valid" => return Ok(()),
                "pending" => retry_after = reply.retry_after,
                "invalid" => {
                    let error = authz.challenges.into_iter().find(|c| c.kind == "http-01").and_then(|c| c.error);
                    return Err(error.map_or_else(
                        || protocol("the authorization became invalid"),
                        |p| p.into_error("the authorization became invalid"),
                    ));
                }
                other => return Err(protocol(format!("the authorization became {other:?}"))),
            }
        }
        Err(protocol(format!("the authorization was still pending after {} polls", self.client.settings.max_polls)))
    }

    /// Polls the order until it is `until`; `immediately` skips the wait before the first poll.
    async fn poll_order(
        &mut self,
        account: &Account,
        order_url: &str,
        until: &str,
        mut retry_after: Option<Duration>,
        immediately: bool,
    ) -> Result<Order, FlowError> {
        for poll in 0..self.client.settings.max_polls {
            if poll > 0 || !immediately {
                let settings = &self.client.settings;
                tokio::time::sleep(poll_wait(retry_after, settings.poll_floor, settings.retry_after_cap)).await;
            }
            let reply = self.post(Endpoint::Poll, order_url, None, Signer::Kid(account)).await?;
            let order: Order = reply.json("order")?;
            if order.status == until {
                return Ok(order);
            }
            match order.status.as_str() {
                "invalid" => {
                    return Err(order.error.map_or_else(
                        || protocol("the order became invalid"),
                        |p| p.into_error("the order became invalid"),
                    ))
                }
                "pending" | "ready" | "processing" => retry_after = reply.retry_after,
                other => return Err(protocol(format!("the order became {other:?} while waiting for {until:?}"))),
            }
        }
        Err(protocol(format!("the order was not {until:?} after {} polls", self.client.settings.max_polls)))
    }
}

fn problem_of(status: StatusCode, body: &[u8]) -> FlowError {
    let fallback = format!("HTTP {}", status.as_u16());
    match serde_json::from_slice::<ProblemDocument>(body) {
        Ok(doc) if !doc.kind.is_empty() => doc.into_error(&fallback),
        _ => FlowError::Problem {
            kind: format!("(HTTP {})", status.as_u16()),
            detail: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_urls_pass() {
        for ok in ["https://localhost:14000/dir", "https://127.0.0.1/x", "https://127.9.9.9/", "http://[::1]:5/"] {
            assert!(ensure_loopback(&Url::parse(ok).unwrap()).is_ok(), "{ok}");
        }
        for bad in ["https://10.0.0.1/", "https://example.com/", "https://[2001:db8::1]/", "ftp://localhost/"] {
            assert!(ensure_loopback(&Url::parse(bad).unwrap()).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_a_challenge_not_yet_valid_makes_the_first_poll_wait() {
        assert!(!first_poll_waits("valid"));
        assert!(first_poll_waits("processing"));
        assert!(first_poll_waits("pending"));
    }

    #[test]
    fn only_every_polls_the_authorization_of_a_challenge_answered_valid() {
        assert!(!polls_authorization(Polls::Lean, "valid"));
        assert!(polls_authorization(Polls::Every, "valid"));
        for pending in ["pending", "processing"] {
            assert!(polls_authorization(Polls::Lean, pending), "{pending}");
            assert!(polls_authorization(Polls::Every, pending), "{pending}");
        }
    }

    #[test]
    fn poll_waits_honour_retry_after_between_floor_and_cap() {
        let (floor, cap) = (Duration::from_millis(50), Duration::from_secs(10));
        assert_eq!(poll_wait(None, floor, cap), floor);
        assert_eq!(poll_wait(Some(Duration::ZERO), floor, cap), floor);
        assert_eq!(poll_wait(Some(Duration::from_secs(1)), floor, cap), Duration::from_secs(1));
        assert_eq!(poll_wait(Some(Duration::from_secs(3600)), floor, cap), cap);
        assert_eq!(parse_retry_after(" 2 "), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn failures_are_counted_by_short_problem_type() {
        let body = br#"{"type":"urn:ietf:params:acme:error:rejectedIdentifier","detail":"no"}"#;
        assert_eq!(problem_of(StatusCode::BAD_REQUEST, body).cause(), "rejectedIdentifier");
        assert_eq!(problem_of(StatusCode::BAD_GATEWAY, b"<html>").cause(), "(HTTP 502)");
        let custom = br#"{"type":"about:blank","detail":"x"}"#;
        assert_eq!(problem_of(StatusCode::BAD_REQUEST, custom).cause(), "about:blank");
    }

    #[test]
    fn thumbprint_is_sha256_of_the_canonical_jwk() {
        let key = AccountKey::generate(&SystemRandom::new()).unwrap();
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            key.jwk["x"].as_str().unwrap(),
            key.jwk["y"].as_str().unwrap()
        );
        let digest = ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes());
        assert_eq!(key.key_authorization("tok"), format!("tok.{}", b64(digest.as_ref())));
        assert_eq!(key.thumbprint.len(), 43);
        for coordinate in ["x", "y"] {
            assert_eq!(URL_SAFE_NO_PAD.decode(key.jwk[coordinate].as_str().unwrap()).unwrap().len(), 32);
        }
    }
}
