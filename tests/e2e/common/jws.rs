//! A raw ACME client that signs whatever it is told to, so tests can send the malformed,
//! replayed and mis-signed requests that real clients never do.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use openssl::bn::BigNumContext;
use openssl::ec::{EcGroup, EcKey};
use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use serde_json::{json, Value};

use super::TestServer;
use dualca_ca::Track;

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub struct Response {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|_| panic!("not JSON (HTTP {}): {}", self.status, self.text))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|v| v.to_str().unwrap().to_string())
    }

    /// Asserts an RFC 7807 problem of exactly this ACME type and HTTP status.
    #[track_caller]
    pub fn assert_problem(&self, kind: &str, status: u16) -> Value {
        assert_eq!(
            self.header("content-type").as_deref(),
            Some("application/problem+json"),
            "expected a problem document, got HTTP {}: {}",
            self.status,
            self.text
        );
        let body = self.json();
        assert_eq!(body["type"], format!("urn:ietf:params:acme:error:{kind}"), "body: {body}");
        assert_eq!(self.status, status, "body: {body}");
        assert_eq!(body["status"], status, "body: {body}");
        assert!(self.header("replay-nonce").is_some(), "a problem response must carry a fresh nonce");
        body
    }
}

#[derive(Clone)]
pub enum Alg {
    Es256,
    Es384,
}

pub struct RawClient {
    pub http: reqwest::Client,
    pub track: Track,
    pub key: PKey<Private>,
    pub alg: Alg,
    pub kid: Option<String>,
    pub base: String,
    pub public_url: String,
    /// EAB credentials sent with newAccount (machine-track clients get them by default).
    pub eab: Option<(String, Vec<u8>)>,
}

/// An externalAccountBinding (RFC 8555 §7.3.4) binding `jwk` with an HS256 MAC.
pub fn eab_binding(kid: &str, hmac_key: &[u8], jwk: &Value, url: &str) -> Value {
    let protected = b64(json!({"alg": "HS256", "kid": kid, "url": url}).to_string().as_bytes());
    let payload = b64(jwk.to_string().as_bytes());
    let key = PKey::hmac(hmac_key).unwrap();
    let mut signer = openssl::sign::Signer::new(MessageDigest::sha256(), &key).unwrap();
    let mac = signer.sign_oneshot_to_vec(format!("{protected}.{payload}").as_bytes()).unwrap();
    json!({"protected": protected, "payload": payload, "signature": b64(&mac)})
}

pub fn new_p256() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

pub fn new_p384() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::SECP384R1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

pub fn jwk_of(key: &PKey<Private>) -> Value {
    let ec = key.ec_key().unwrap();
    let mut ctx = BigNumContext::new().unwrap();
    let mut x = openssl::bn::BigNum::new().unwrap();
    let mut y = openssl::bn::BigNum::new().unwrap();
    ec.public_key().affine_coordinates(ec.group(), &mut x, &mut y, &mut ctx).unwrap();
    let (crv, size) = if ec.group().curve_name() == Some(Nid::SECP384R1) { ("P-384", 48) } else { ("P-256", 32) };
    json!({"kty": "EC", "crv": crv, "x": b64(&x.to_vec_padded(size).unwrap()), "y": b64(&y.to_vec_padded(size).unwrap())})
}

/// ES256/ES384 JWS signature: raw r || s.
pub fn es_sign(key: &PKey<Private>, input: &[u8]) -> Vec<u8> {
    let ec = key.ec_key().unwrap();
    let p384 = ec.group().curve_name() == Some(Nid::SECP384R1);
    let (digest, size) = if p384 { (MessageDigest::sha384(), 48) } else { (MessageDigest::sha256(), 32) };
    let hash = openssl::hash::hash(digest, input).unwrap();
    let sig = EcdsaSig::sign(&hash, &ec).unwrap();
    let mut out = sig.r().to_vec_padded(size).unwrap();
    out.extend(sig.s().to_vec_padded(size).unwrap());
    out
}

/// A flattened JWS over `protected` and `payload` (None = POST-as-GET), signed by `key`.
pub fn flattened(key: &PKey<Private>, protected: &Value, payload: Option<&Value>) -> Value {
    let protected_b64 = b64(protected.to_string().as_bytes());
    let payload_b64 = payload.map(|p| b64(p.to_string().as_bytes())).unwrap_or_default();
    let signature = es_sign(key, format!("{protected_b64}.{payload_b64}").as_bytes());
    json!({"protected": protected_b64, "payload": payload_b64, "signature": b64(&signature)})
}

impl RawClient {
    pub fn new(server: &TestServer, track: Track) -> RawClient {
        let mut client = Self::bare(server, track);
        client.eab = (track == Track::Machine).then(|| server.eab());
        client
    }

    /// A client with no EAB credentials, for tests that bring their own asset.
    pub fn bare(server: &TestServer, track: Track) -> RawClient {
        RawClient {
            http: server.http(),
            track,
            key: new_p256(),
            alg: Alg::Es256,
            kid: None,
            base: format!("{}/acme/{track}", server.public_url),
            public_url: server.public_url.clone(),
            eab: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    pub async fn nonce(&self) -> String {
        let res = self.http.head(self.url("new-nonce")).send().await.unwrap();
        res.headers()["replay-nonce"].to_str().unwrap().to_string()
    }

    pub fn alg_name(&self) -> &'static str {
        match self.alg {
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
        }
    }

    /// The protected header this client would send to `url`.
    pub async fn protected(&self, url: &str) -> Value {
        let mut protected = json!({"alg": self.alg_name(), "nonce": self.nonce().await, "url": url});
        match &self.kid {
            Some(kid) => protected["kid"] = json!(kid),
            None => protected["jwk"] = jwk_of(&self.key),
        }
        protected
    }

    pub async fn send_body(&self, url: &str, body: String, content_type: &str) -> Response {
        let res = self.http.post(url).header("content-type", content_type).body(body).send().await.unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        Response { status, headers, text }
    }

    pub async fn send_jws(&self, url: &str, jws: &Value) -> Response {
        self.send_body(url, jws.to_string(), "application/jose+json").await
    }

    /// A correct request: fresh nonce, right URL, signed by this client's key.
    pub async fn post(&self, url: &str, payload: Option<&Value>) -> Response {
        let protected = self.protected(url).await;
        self.send_jws(url, &flattened(&self.key, &protected, payload)).await
    }

    pub async fn create_account(&mut self) -> Response {
        let url = self.url("new-account");
        let mut payload = json!({"termsOfServiceAgreed": true});
        if let Some((kid, key)) = &self.eab {
            payload["externalAccountBinding"] = eab_binding(kid, key, &jwk_of(&self.key), &url);
        }
        let res = self.post(&url, Some(&payload)).await;
        assert_eq!(res.status, 201, "{}", res.text);
        self.kid = res.header("location");
        res
    }
}
