//! The one wrapper every ACME response passes through: Replay-Nonce, `Link rel="index"`,
//! `Cache-Control: no-store`, problem documents in place of the framework's bare 404/405, and
//! one log line per request.

use std::future::{ready, Ready};
use std::rc::Rc;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpMessage, ResponseError};
use futures_util::future::LocalBoxFuture;

use crate::jws::ResponseNonce;
use crate::problem::{self, Problem};
use crate::AcmeState;

/// Set by the JWS extractor so the request log names the account.
#[derive(Clone)]
pub struct LoggedAccount(pub String);

pub struct AcmeHeaders {
    state: web::Data<AcmeState>,
}

impl AcmeHeaders {
    pub fn new(state: web::Data<AcmeState>) -> Self {
        AcmeHeaders { state }
    }
}

impl<S, B> Transform<S, ServiceRequest> for AcmeHeaders
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = actix_web::Error;
    type Transform = AcmeHeadersService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(AcmeHeadersService { service: Rc::new(service), state: self.state.clone() }))
    }
}

pub struct AcmeHeadersService<S> {
    service: Rc<S>,
    state: web::Data<AcmeState>,
}

impl<S, B> Service<ServiceRequest> for AcmeHeadersService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    actix_web::dev::forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let service = self.service.clone();
        let state = self.state.clone();
        let started = Instant::now();
        Box::pin(async move {
            let method = req.method().clone();
            let path = req.path().to_string();
            let mut res = match service.call(req).await {
                Ok(res) => res.map_into_boxed_body(),
                Err(e) => return Err(e),
            };
            // The router answers unknown methods and paths itself, without a body; give those
            // a problem document like every other error.
            let status = res.status();
            let is_problem = res
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(problem::CONTENT_TYPE.as_bytes()));
            if !is_problem && (status == StatusCode::METHOD_NOT_ALLOWED || status == StatusCode::NOT_FOUND) {
                let replacement = if status == StatusCode::METHOD_NOT_ALLOWED {
                    Problem::method_not_allowed()
                } else {
                    Problem::not_found("no such resource")
                };
                res = res.into_response(replacement.error_response());
            }
            let issued = res.request().extensions_mut().remove::<ResponseNonce>();
            let nonce = if let Some(ResponseNonce(nonce)) = issued {
                Ok(nonce)
            } else if state.ca.nonces_in_memory() {
                state.ca.new_nonce()
            } else {
                let ca = state.ca.clone();
                web::block(move || ca.new_nonce()).await.unwrap_or_else(|e| Err(dualca_ca::Error::internal(e)))
            };
            let headers = res.headers_mut();
            if let Ok(nonce) = nonce {
                if let Ok(value) = HeaderValue::from_str(&nonce) {
                    headers.insert(header::HeaderName::from_static("replay-nonce"), value);
                }
            }
            if let Some(link) = &state.index_link {
                headers.append(header::LINK, link.clone());
            }
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            let account = res.request().extensions().get::<LoggedAccount>().map(|a| a.0.clone());
            let route = res.request().match_pattern().unwrap_or_else(|| "-".into());
            let elapsed = started.elapsed();
            crate::metrics::REQUEST_SECONDS
                .with_label_values(&[state.track.as_str(), route.as_str(), res.status().as_str()])
                .observe(elapsed.as_secs_f64());
            tracing::info!(
                track = %state.track,
                method = %method,
                route = %route,
                path = %path,
                status = res.status().as_u16(),
                // To the microsecond: `11.249`, not `11.249362000000001`.
                latency_ms = elapsed.as_micros() as f64 / 1000.0,
                account = account.as_deref().unwrap_or("-"),
                "acme request"
            );
            Ok(res)
        })
    }
}
