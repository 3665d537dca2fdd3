//! RFC 7807 problem documents with the ACME error types of RFC 8555 §6.7. Every error the
//! front end sends goes through `Problem`, and every domain error becomes one in `From<Error>`,
//! the one place where kinds meet types and statuses.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use dualca_ca::{Error, ErrorKind};
use serde_json::{json, Value};

pub const CONTENT_TYPE: &str = "application/problem+json";

#[derive(Debug, Clone)]
pub struct Problem {
    /// The part after `urn:ietf:params:acme:error:`.
    pub kind: &'static str,
    pub detail: String,
    pub status: StatusCode,
    /// badSignatureAlgorithm lists what is accepted (RFC 8555 §6.2).
    pub algorithms: Option<&'static [&'static str]>,
    /// A Location header, e.g. the account that holds a key on a keyChange conflict.
    pub location: Option<String>,
}

impl Problem {
    pub fn new(kind: &'static str, status: StatusCode, detail: impl Into<String>) -> Problem {
        Problem { kind, detail: detail.into(), status, algorithms: None, location: None }
    }

    pub fn malformed(detail: impl Into<String>) -> Problem {
        Problem::new("malformed", StatusCode::BAD_REQUEST, detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Problem {
        Problem::new("unauthorized", StatusCode::FORBIDDEN, detail)
    }

    pub fn bad_nonce(detail: impl Into<String>) -> Problem {
        Problem::new("badNonce", StatusCode::BAD_REQUEST, detail)
    }

    pub fn bad_signature_algorithm(detail: impl Into<String>) -> Problem {
        let mut p = Problem::new("badSignatureAlgorithm", StatusCode::BAD_REQUEST, detail);
        p.algorithms = Some(dualca_ca::jwk::ACCEPTED_ALGORITHMS);
        p
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new("malformed", StatusCode::NOT_FOUND, detail)
    }

    pub fn method_not_allowed() -> Problem {
        Problem::new("malformed", StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this resource")
    }

    pub fn unsupported_media_type() -> Problem {
        Problem::new(
            "malformed",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "requests must have Content-Type: application/jose+json",
        )
    }

    pub fn type_urn(&self) -> String {
        format!("urn:ietf:params:acme:error:{}", self.kind)
    }

    /// The JSON object as it appears in a response body, or inside an order or challenge.
    pub fn to_json(&self) -> Value {
        let mut body = json!({ "type": self.type_urn(), "detail": self.detail, "status": self.status.as_u16() });
        if let Some(algs) = self.algorithms {
            body["algorithms"] = json!(algs);
        }
        body
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        res.insert_header((header::CONTENT_TYPE, CONTENT_TYPE));
        if let Some(location) = &self.location {
            res.insert_header((header::LOCATION, location.clone()));
        }
        res.body(self.to_json().to_string())
    }
}

/// The type and status for each domain error kind.
pub fn kind_type_and_status(kind: ErrorKind) -> (&'static str, StatusCode) {
    use ErrorKind::*;
    match kind {
        Malformed => ("malformed", StatusCode::BAD_REQUEST),
        Unauthorized => ("unauthorized", StatusCode::FORBIDDEN),
        AccountDoesNotExist => ("accountDoesNotExist", StatusCode::BAD_REQUEST),
        BadCsr => ("badCSR", StatusCode::BAD_REQUEST),
        BadPublicKey => ("badPublicKey", StatusCode::BAD_REQUEST),
        BadSignatureAlgorithm => ("badSignatureAlgorithm", StatusCode::BAD_REQUEST),
        RejectedIdentifier => ("rejectedIdentifier", StatusCode::BAD_REQUEST),
        UnsupportedIdentifier => ("unsupportedIdentifier", StatusCode::BAD_REQUEST),
        OrderNotReady => ("orderNotReady", StatusCode::FORBIDDEN),
        AlreadyRevoked => ("alreadyRevoked", StatusCode::BAD_REQUEST),
        AlreadyReplaced => ("alreadyReplaced", StatusCode::CONFLICT),
        BadRevocationReason => ("badRevocationReason", StatusCode::BAD_REQUEST),
        UserActionRequired => ("userActionRequired", StatusCode::FORBIDDEN),
        RateLimited => ("rateLimited", StatusCode::TOO_MANY_REQUESTS),
        ExternalAccountRequired => ("externalAccountRequired", StatusCode::UNAUTHORIZED),
        InvalidProfile => ("invalidProfile", StatusCode::BAD_REQUEST),
        InvalidContact => ("invalidContact", StatusCode::BAD_REQUEST),
        UnsupportedContact => ("unsupportedContact", StatusCode::BAD_REQUEST),
        NotFound => ("malformed", StatusCode::NOT_FOUND),
        Conflict => ("malformed", StatusCode::CONFLICT),
        Connection => ("connection", StatusCode::BAD_REQUEST),
        Dns => ("dns", StatusCode::BAD_REQUEST),
        Tls => ("tls", StatusCode::BAD_REQUEST),
        IncorrectResponse => ("incorrectResponse", StatusCode::BAD_REQUEST),
        Internal => ("serverInternal", StatusCode::INTERNAL_SERVER_ERROR),
    }
}

impl From<Error> for Problem {
    fn from(e: Error) -> Problem {
        let (kind, status) = kind_type_and_status(e.kind);
        let mut p = Problem::new(kind, status, e.detail);
        if e.kind == ErrorKind::BadSignatureAlgorithm {
            p.algorithms = Some(dualca_ca::jwk::ACCEPTED_ALGORITHMS);
        }
        p
    }
}

impl From<actix_web::error::BlockingError> for Problem {
    fn from(e: actix_web::error::BlockingError) -> Problem {
        Problem::from(Error::internal(e))
    }
}
