//! dualca-admin: the operator-facing HTTP surface. For now, the public CA certificate files and
//! the health endpoints; the JWT-protected admin API and pages build on this crate.

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use dualca_ca::{Ca, Track};

/// `/ca/{root,machine,human}.pem` (AIA caIssuers), `/healthz` and `/readyz`.
pub fn public_routes(cfg: &mut web::ServiceConfig, ca: Arc<Ca>) {
    cfg.app_data(web::Data::from(ca))
        .route("/ca/{name}.pem", web::get().to(ca_certificate))
        .route("/healthz", web::get().to(|| async { HttpResponse::Ok().body("ok\n") }))
        .route("/readyz", web::get().to(readyz))
        .default_service(web::to(not_found));
}

async fn ca_certificate(ca: web::Data<Ca>, name: web::Path<String>) -> HttpResponse {
    let pem = match name.as_str() {
        "root" => ca.hierarchy.root_pem.clone(),
        other => match other.parse::<Track>() {
            Ok(track) => ca.hierarchy.issuer(track).cert_pem.clone(),
            Err(_) => return not_found().await,
        },
    };
    HttpResponse::Ok().content_type("application/x-pem-file").body(pem)
}

async fn readyz(ca: web::Data<Ca>) -> HttpResponse {
    let ca = ca.into_inner();
    match web::block(move || ca.storage.read(|_| Ok(()))).await {
        Ok(Ok(())) => HttpResponse::Ok().body("ready\n"),
        _ => HttpResponse::ServiceUnavailable().body("database unavailable\n"),
    }
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound()
        .content_type("application/problem+json")
        .body(r#"{"type":"about:blank","title":"Not Found","status":404}"#)
}
