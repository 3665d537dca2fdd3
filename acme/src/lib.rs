//! dualca-acme: the RFC 8555 front end. One actix-web scope, mounted once per track, each with
//! its own `AcmeState`. Handlers verify (the `Jws` extractor), decode, make one `Ca` call and
//! render; they never touch storage or keys.

mod handlers;
pub mod intake;
mod jws;
pub mod metrics;
mod middleware;
pub mod problem;
pub mod validation;
mod wire;

use std::sync::Arc;

use actix_web::web;
use dualca_ca::{Ca, Track};

pub use handlers::set_blocking_limit;
pub use validation::{Validator, ValidatorSettings};

/// What one mounted directory needs.
pub struct AcmeState {
    pub track: Track,
    pub ca: Arc<Ca>,
    pub validator: Arc<Validator>,
    /// `{public_url}/acme/{track}`: every URL this directory hands out starts with it.
    pub base: String,
    /// `Link: <{base}/directory>;rel="index"`, which every response carries (RFC 8555 §7.1),
    /// built once.
    index_link: Option<actix_web::http::header::HeaderValue>,
}

impl AcmeState {
    pub fn new(track: Track, ca: Arc<Ca>, validator: Arc<Validator>) -> AcmeState {
        let base = format!("{}/acme/{track}", ca.public_url());
        let index_link =
            actix_web::http::header::HeaderValue::from_str(&format!("<{base}/directory>;rel=\"index\"")).ok();
        AcmeState { track, ca, validator, base, index_link }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    pub fn account_url(&self, id: &str) -> String {
        self.url(&format!("acct/{id}"))
    }
}

/// Mounts one track's directory at `/acme/{track}`.
pub fn scope(
    state: AcmeState,
) -> actix_web::Scope<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<actix_web::body::BoxBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let track = state.track;
    let state = web::Data::new(state);
    let post = web::post;
    web::scope(&format!("/acme/{track}"))
        .app_data(state.clone())
        .app_data(
            web::QueryConfig::default().error_handler(|e, _| problem::Problem::malformed(format!("query: {e}")).into()),
        )
        .app_data(
            web::PathConfig::default().error_handler(|e, _| problem::Problem::malformed(format!("path: {e}")).into()),
        )
        .wrap(middleware::AcmeHeaders::new(state))
        .service(web::resource("/directory").route(web::get().to(handlers::directory::directory)))
        .service(
            web::resource("/new-nonce")
                .route(web::head().to(handlers::directory::new_nonce_head))
                .route(web::get().to(handlers::directory::new_nonce_get)),
        )
        .service(web::resource("/new-account").route(post().to(handlers::account::new_account)))
        .service(web::resource("/acct/{id}").route(post().to(handlers::account::account)))
        .service(web::resource("/acct/{id}/orders").route(post().to(handlers::order::orders_list)))
        .service(web::resource("/key-change").route(post().to(handlers::account::key_change)))
        .service(web::resource("/new-order").route(post().to(handlers::order::new_order)))
        .service(web::resource("/order/{id}").route(post().to(handlers::order::order)))
        .service(web::resource("/finalize/{id}").route(post().to(handlers::order::finalize)))
        .service(web::resource("/authz/{id}").route(post().to(handlers::authz::authorization)))
        .service(web::resource("/chall/{id}").route(post().to(handlers::authz::challenge)))
        .service(web::resource("/cert/{serial}").route(post().to(handlers::certificate::certificate)))
        .service(web::resource("/renewal-info/{id}").route(web::get().to(handlers::directory::renewal_info)))
        .service(web::resource("/revoke-cert").route(post().to(handlers::certificate::revoke)))
        .default_service(web::to(handlers::not_found))
}
