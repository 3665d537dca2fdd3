//! Unauthenticated endpoints for relying parties: the CA certificates (AIA caIssuers), each
//! track's CRL and OCSP responder, and the health checks.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use dualca_ca::ocsp::{self, ErrorStatus};
use dualca_ca::{Ca, Track};

pub fn public_routes(cfg: &mut web::ServiceConfig, ca: Arc<Ca>) {
    cfg.app_data(web::Data::from(ca))
        .route("/ca/{name}.pem", web::get().to(ca_certificate))
        .route("/ca/{name}.der", web::get().to(ca_certificate_der))
        .route("/crl/{track}.crl", web::get().to(crl))
        .route("/ocsp/{track}", web::post().to(ocsp_post))
        .route("/ocsp/{track}/{request:.*}", web::get().to(ocsp_get))
        .route("/healthz", web::get().to(|| async { HttpResponse::Ok().body("ok\n") }))
        .route("/readyz", web::get().to(readyz))
        .configure(crate::people::enrollment_routes)
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

/// RFC 5280 §4.2.2.1: caIssuers over HTTP is a single DER certificate.
async fn ca_certificate_der(ca: web::Data<Ca>, name: web::Path<String>) -> HttpResponse {
    let der = match name.as_str() {
        "root" => ca.hierarchy.root_der.clone(),
        other => match other.parse::<Track>() {
            Ok(track) => ca.hierarchy.issuer(track).cert_der.clone(),
            Err(_) => return not_found().await,
        },
    };
    HttpResponse::Ok().content_type("application/pkix-cert").body(der)
}

/// The track's newest CRL. Caches may keep it a minute: a revocation must not wait for a
/// cache, and the number in the ETag tells them when it changed.
async fn crl(ca: web::Data<Ca>, track: web::Path<String>) -> HttpResponse {
    let Ok(track) = track.parse::<Track>() else { return not_found().await };
    let ca = ca.into_inner();
    match web::block(move || ca.current_crl(track)).await {
        Ok(Ok((number, der))) => HttpResponse::Ok()
            .content_type("application/pkix-crl")
            .insert_header((header::CACHE_CONTROL, "public, max-age=60, no-transform"))
            .insert_header((header::ETAG, format!("\"{track}-{number}\"")))
            .body(der.as_ref().clone()),
        _ => HttpResponse::ServiceUnavailable().body("CRL unavailable\n"),
    }
}

fn ocsp_reply(der: Vec<u8>) -> HttpResponse {
    // A successful response carries responseBytes ([0] after the status); errors must not be
    // cached, or a passing failure would outlive its cause.
    let successful = ocsp::is_successful(&der);
    let cache = if successful { "public, max-age=300, no-transform" } else { "no-store" };
    HttpResponse::Ok().content_type("application/ocsp-response").insert_header((header::CACHE_CONTROL, cache)).body(der)
}

async fn answer(ca: web::Data<Ca>, track: &str, request: Vec<u8>) -> HttpResponse {
    let Ok(track) = track.parse::<Track>() else { return not_found().await };
    let ca = ca.into_inner();
    match web::block(move || ca.ocsp_response(track, &request)).await {
        Ok(der) => ocsp_reply(der),
        Err(_) => ocsp_reply(ocsp::error_response(ErrorStatus::InternalError)),
    }
}

/// RFC 6960 §A.1: POST with application/ocsp-request. An oversized body is a
/// malformedRequest, read no further.
async fn ocsp_post(ca: web::Data<Ca>, track: web::Path<String>, mut body: web::Payload) -> HttpResponse {
    use futures_util::StreamExt;
    let mut request = Vec::new();
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else { return ocsp_reply(ocsp::error_response(ErrorStatus::MalformedRequest)) };
        if request.len() + chunk.len() > ocsp::MAX_REQUEST {
            return ocsp_reply(ocsp::error_response(ErrorStatus::MalformedRequest));
        }
        request.extend_from_slice(&chunk);
    }
    answer(ca, &track, request).await
}

/// RFC 6960 §A.1: GET with the base64 DER request, URL-encoded, as the last path segment.
async fn ocsp_get(ca: web::Data<Ca>, req: HttpRequest, track: web::Path<(String, String)>) -> HttpResponse {
    let raw_path = req.uri().path();
    let encoded = raw_path.split_once(&format!("/ocsp/{}/", track.0)).map(|(_, rest)| rest).unwrap_or("");
    let decoded = percent_decode(encoded);
    match base64::engine::general_purpose::STANDARD.decode(decoded.trim()) {
        Ok(request) => answer(ca, &track.0, request).await,
        Err(_) => ocsp_reply(ocsp::error_response(ErrorStatus::MalformedRequest)),
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
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

#[cfg(test)]
mod tests {
    #[test]
    fn percent_decoding() {
        assert_eq!(super::percent_decode("%é1"), "%é1");
        assert_eq!(super::percent_decode("MEow%2FTTBL%2B"), "MEow/TTBL+");
        assert_eq!(super::percent_decode("abc%"), "abc%");
        assert_eq!(super::percent_decode("%zz"), "%zz");
    }
}
