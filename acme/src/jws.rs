//! The JWS extractor (RFC 8555 §6.2–6.5). A handler that takes `Jws` gets a request whose
//! signature, nonce, URL and signer have all been checked.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use dualca_ca::jwk::PublicJwk;
use dualca_ca::model::{Account, AccountStatus};
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::middleware::LoggedAccount;
use crate::problem::Problem;
use crate::AcmeState;

/// Requests larger than this are refused before parsing; the largest legitimate ACME request
/// (a finalize with an RSA-8192 CSR) is far smaller.
pub const MAX_BODY: usize = 64 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlattenedJws {
    pub protected: String,
    pub payload: String,
    pub signature: String,
}

#[derive(Deserialize)]
pub struct Protected {
    pub alg: Option<String>,
    pub nonce: Option<String>,
    pub url: Option<String>,
    pub jwk: Option<Value>,
    pub kid: Option<String>,
}

pub enum Signer {
    Account(Account),
    Key(PublicJwk),
}

/// A nonce for the response, issued while the request was checked (`Jws`); the middleware
/// issues one itself when there is none.
pub struct ResponseNonce(pub String);

pub struct Jws {
    pub signer: Signer,
    pub payload: Vec<u8>,
    /// The request URL the client signed.
    pub url: String,
}

impl Jws {
    /// RFC 8555 §6.3: an empty payload is a POST-as-GET.
    pub fn is_post_as_get(&self) -> bool {
        self.payload.is_empty()
    }

    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Problem> {
        serde_json::from_slice(&self.payload).map_err(|e| Problem::malformed(format!("request payload: {e}")))
    }

    pub fn account(&self) -> Result<&Account, Problem> {
        match &self.signer {
            Signer::Account(a) => Ok(a),
            Signer::Key(_) => Err(Problem::malformed("this request must be signed with an account key (kid)")),
        }
    }

    pub fn require_post_as_get(&self) -> Result<(), Problem> {
        if self.is_post_as_get() {
            Ok(())
        } else {
            Err(Problem::malformed("this resource takes POST-as-GET: the payload must be empty"))
        }
    }
}

pub fn b64(field: &str, value: &str) -> Result<Vec<u8>, Problem> {
    URL_SAFE_NO_PAD.decode(value).map_err(|_| Problem::malformed(format!("{field} is not base64url")))
}

/// Parses a flattened JWS (also used for keyChange's inner JWS).
pub fn parse_flattened(body: &[u8]) -> Result<(FlattenedJws, Protected), Problem> {
    let value: Value = serde_json::from_slice(body).map_err(|_| Problem::malformed("the body is not a JSON object"))?;
    if value.get("signatures").is_some() {
        return Err(Problem::malformed("only the flattened JWS serialization is accepted"));
    }
    if value.get("header").is_some() {
        return Err(Problem::malformed("unprotected JWS headers are not accepted"));
    }
    let jws: FlattenedJws = serde_json::from_value(value)
        .map_err(|e| Problem::malformed(format!("the body is not a flattened JWS: {e}")))?;
    let protected: Protected = serde_json::from_slice(&b64("protected", &jws.protected)?)
        .map_err(|_| Problem::malformed("the protected header is not a JSON object"))?;
    Ok((jws, protected))
}

/// Checks `alg` before anything is looked up: `none` and MACs never verify an ACME request.
pub fn check_algorithm(protected: &Protected) -> Result<&str, Problem> {
    let alg = protected.alg.as_deref().ok_or_else(|| Problem::malformed("the protected header has no alg"))?;
    if !dualca_ca::jwk::ACCEPTED_ALGORITHMS.contains(&alg) {
        return Err(Problem::bad_signature_algorithm(format!("JWS algorithm {alg:?} is not accepted")));
    }
    Ok(alg)
}

pub fn verify_signature(jws: &FlattenedJws, key: &PublicJwk, alg: &str) -> Result<(), Problem> {
    if !key.algorithm_matches(alg) {
        return Err(Problem::bad_signature_algorithm(format!("JWS algorithm {alg:?} does not match the key's type")));
    }
    let signature = b64("signature", &jws.signature)?;
    let signing_input = format!("{}.{}", jws.protected, jws.payload);
    if !key.verify(signing_input.as_bytes(), &signature)? {
        return Err(Problem::malformed("JWS signature is invalid"));
    }
    Ok(())
}

/// The account id in a `kid`, when it is an account URL of this directory (`prefix`).
fn account_id<'a>(kid: &'a str, prefix: &str) -> Option<&'a str> {
    kid.strip_prefix(prefix).filter(|id| !id.is_empty() && !id.contains('/'))
}

impl FromRequest for Jws {
    type Error = Problem;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let mut payload = payload.take();
        Box::pin(async move {
            let state = req
                .app_data::<web::Data<AcmeState>>()
                .cloned()
                .ok_or_else(|| Problem::from(dualca_ca::Error::internal("ACME state missing")))?;
            let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
            let mime = content_type.split(';').next().unwrap_or("").trim();
            if !mime.eq_ignore_ascii_case("application/jose+json") {
                return Err(Problem::unsupported_media_type());
            }
            let mut body = Vec::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| Problem::malformed(format!("reading the request body: {e}")))?;
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(Problem::new(
                        "malformed",
                        actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
                        format!("the request body exceeds {MAX_BODY} bytes"),
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            let (jws, protected) = parse_flattened(&body)?;
            let alg = check_algorithm(&protected)?.to_string();

            let nonce =
                protected.nonce.clone().ok_or_else(|| Problem::bad_nonce("the protected header has no nonce"))?;
            let prefix = state.account_url("");
            // Nonces kept in the database (PostgreSQL) cost a blocking call each. One call
            // redeems this request's nonce, issues the response's (`ResponseNonce`, which the
            // middleware would otherwise issue in a call of its own), and reads the `kid`'s
            // account, which the checks below would otherwise read in a third.
            let (fresh, prefetched) = if state.ca.nonces_in_memory() {
                (state.ca.consume_nonce(&nonce)?, None)
            } else {
                let ca = state.ca.clone();
                let track = state.track;
                let id = match (&protected.jwk, &protected.kid) {
                    (None, Some(kid)) => account_id(kid, &prefix).map(str::to_string),
                    _ => None,
                };
                let exchanged = web::block(move || {
                    ca.exchange_nonce(&nonce, id.as_deref().map(|id| (track, id)))
                        .unwrap_or_else(|| Err(dualca_ca::Error::internal("nonces are not in the database")))
                })
                .await??;
                req.extensions_mut().insert(ResponseNonce(exchanged.response_nonce));
                (exchanged.fresh, exchanged.account)
            };
            if !fresh {
                return Err(Problem::bad_nonce("the nonce is unknown, expired or already used"));
            }

            let expected_url = match req.uri().query() {
                Some(q) => format!("{}{}?{q}", state.ca.public_url(), req.path()),
                None => format!("{}{}", state.ca.public_url(), req.path()),
            };
            let url = protected.url.clone().ok_or_else(|| Problem::malformed("the protected header has no url"))?;
            if url != expected_url {
                return Err(Problem::unauthorized(format!(
                    "the protected header's url {url:?} is not the request URL {expected_url:?}"
                )));
            }

            let signer = match (&protected.jwk, &protected.kid) {
                (Some(_), Some(_)) => return Err(Problem::malformed("the protected header has both jwk and kid")),
                (None, None) => return Err(Problem::malformed("the protected header has neither jwk nor kid")),
                (Some(jwk), None) => {
                    let key = PublicJwk::from_value(jwk)?;
                    verify_signature(&jws, &key, &alg)?;
                    Signer::Key(key)
                }
                (None, Some(kid)) => {
                    let Some(id) = account_id(kid, &prefix) else {
                        return Err(Problem::from(dualca_ca::Error::account_does_not_exist(format!(
                            "kid {kid:?} is not an account URL of the {} directory",
                            state.track
                        ))));
                    };
                    let account = match prefetched {
                        Some(found) => found?,
                        None => match state.ca.account_in_place(state.track, id) {
                            Some(found) => found?,
                            None => {
                                let (ca, track, id) = (state.ca.clone(), state.track, id.to_string());
                                web::block(move || ca.account(track, &id)).await??
                            }
                        },
                    };
                    let key = state.ca.account_key(&account)?;
                    verify_signature(&jws, &key, &alg)?;
                    if account.status != AccountStatus::Valid {
                        return Err(Problem::unauthorized(format!("the account is {}", account.status.as_str())));
                    }
                    req.extensions_mut().insert(LoggedAccount(account.id.clone()));
                    Signer::Account(account)
                }
            };
            let payload = b64("payload", &jws.payload)?;
            Ok(Jws { signer, payload, url })
        })
    }
}
