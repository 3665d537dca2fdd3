//! dualca-admin: the operator- and relying-party-facing HTTP surface: the public endpoints
//! (`public`), the JWT-protected admin API (`api`, `auth`), its OpenAPI description and the
//! Prometheus metrics.

pub mod api;
pub mod assets;
pub mod auth;
pub mod metrics;
pub mod openapi;
pub mod pages;
pub mod people;
pub mod problem;
pub mod public;
pub mod sync;

use std::sync::Arc;

use actix_web::web;
pub use auth::{AdminAuth, AdminState, Role, TokenAlgorithm};
use dualca_ca::Ca;
pub use public::public_routes;

/// Mounts the admin API and /metrics; the public routes and the fallback come after.
pub fn admin_routes(cfg: &mut web::ServiceConfig, ca: Arc<Ca>, auth: Arc<AdminAuth>) {
    cfg.app_data(web::Data::new(AdminState { ca, auth }))
        .app_data(
            web::JsonConfig::default()
                .error_handler(|err, _| problem::AdminProblem::bad_request(format!("request body: {err}")).into()),
        )
        .app_data(
            web::QueryConfig::default()
                .error_handler(|err, _| problem::AdminProblem::bad_request(format!("query: {err}")).into()),
        )
        .route("/metrics", web::get().to(metrics::metrics))
        .configure(api::configure)
        .configure(pages::configure);
}
