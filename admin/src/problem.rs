//! RFC 7807 problems for the admin API.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

#[derive(Debug, Clone)]
pub struct AdminProblem {
    pub status: StatusCode,
    pub kind: &'static str,
    pub detail: String,
}

impl AdminProblem {
    fn new(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> Self {
        AdminProblem { status, kind, detail: detail.into() }
    }
    pub fn unauthenticated(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", detail)
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "badRequest", detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "notFound", detail)
    }
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", detail)
    }
    pub fn internal(detail: impl Into<String>) -> Self {
        tracing::error!(detail = %detail.into(), "admin API internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal server error")
    }
}

impl std::fmt::Display for AdminProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

impl ResponseError for AdminProblem {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        let body = json!({
            "type": format!("urn:dualca:admin:error:{}", self.kind),
            "title": self.status.canonical_reason().unwrap_or(""),
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        let mut res = HttpResponse::build(self.status);
        res.insert_header((header::CONTENT_TYPE, "application/problem+json"));
        if self.status == StatusCode::UNAUTHORIZED {
            res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        res.body(body.to_string())
    }
}

impl From<dualca_ca::Error> for AdminProblem {
    fn from(e: dualca_ca::Error) -> Self {
        use dualca_ca::ErrorKind::*;
        match e.kind {
            NotFound => AdminProblem::not_found(e.detail),
            AlreadyRevoked | Conflict => AdminProblem::conflict(e.detail),
            // The CA's own refusals of an allowed role, such as the two-person rule.
            Unauthorized => AdminProblem::forbidden(e.detail),
            Internal => AdminProblem::internal(e.detail),
            _ => AdminProblem::bad_request(e.detail),
        }
    }
}

impl From<actix_web::error::BlockingError> for AdminProblem {
    fn from(e: actix_web::error::BlockingError) -> Self {
        AdminProblem::internal(e.to_string())
    }
}

/// A required JSON body, parsed after the role check (a caller who may not is told so, not that
/// their body is wrong).
pub fn required_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, AdminProblem> {
    serde_json::from_slice(body).map_err(|e| AdminProblem::bad_request(format!("request body: {e}")))
}

/// An optional JSON body: empty means the defaults; anything else must parse, or the request is
/// refused (a malformed body never silently becomes "no body").
pub fn optional_json<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, AdminProblem> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| AdminProblem::bad_request(format!("request body: {e}")))
}
