pub mod account;
pub mod authz;
pub mod certificate;
pub mod directory;
pub mod order;

use actix_web::http::header;
use actix_web::HttpResponse;
use serde_json::Value;

use crate::problem::Problem;

pub async fn not_found() -> Result<HttpResponse, Problem> {
    Err(Problem::not_found("no such resource"))
}

/// A JSON resource response, with its Location when it has one.
pub fn json_response(status: actix_web::http::StatusCode, location: Option<String>, body: &Value) -> HttpResponse {
    let mut res = HttpResponse::build(status);
    if let Some(location) = location {
        res.insert_header((header::LOCATION, location));
    }
    res.content_type("application/json").body(body.to_string())
}

/// Runs a blocking CA call off the async executor.
pub async fn ca_call<T: Send + 'static>(
    f: impl FnOnce() -> dualca_ca::Result<T> + Send + 'static,
) -> Result<T, Problem> {
    Ok(actix_web::web::block(f).await??)
}
