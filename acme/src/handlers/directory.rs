use actix_web::{web, HttpResponse};
use serde_json::{json, Map, Value};

use crate::AcmeState;

pub async fn directory(state: web::Data<AcmeState>) -> HttpResponse {
    let policy = state.ca.policy(state.track);
    let mut meta = Map::new();
    if let Some(tos) = &policy.terms_of_service {
        meta.insert("termsOfService".into(), json!(tos));
    }
    if let Some(website) = &policy.website {
        meta.insert("website".into(), json!(website));
    }
    meta.insert("caaIdentities".into(), json!(policy.caa_identities));
    meta.insert("externalAccountRequired".into(), json!(policy.external_account_required));
    let profiles: Map<String, Value> = policy.profiles.iter().map(|p| (p.name.clone(), json!(p.description))).collect();
    meta.insert("profiles".into(), Value::Object(profiles));
    let body = json!({
        "newNonce": state.url("new-nonce"),
        "newAccount": state.url("new-account"),
        "newOrder": state.url("new-order"),
        "revokeCert": state.url("revoke-cert"),
        "keyChange": state.url("key-change"),
        "renewalInfo": state.url("renewal-info"),
        "meta": meta,
    });
    HttpResponse::Ok().content_type("application/json").body(body.to_string())
}

/// RFC 8555 §7.2: HEAD answers 200, GET 204; the wrapper adds the nonce and no-store.
pub async fn new_nonce_head() -> HttpResponse {
    HttpResponse::Ok().finish()
}

pub async fn new_nonce_get() -> HttpResponse {
    HttpResponse::NoContent().finish()
}

/// RFC 9773 §4: the suggested renewal window, by certificate identifier (GET, unauthenticated).
pub async fn renewal_info(
    state: web::Data<AcmeState>,
    id: web::Path<String>,
) -> Result<HttpResponse, crate::problem::Problem> {
    let (ca, track, id) = (state.ca.clone(), state.track, id.into_inner());
    let window = super::ca_call(&state.ca, move || ca.renewal_info(track, &id)).await?;
    let body = json!({
        "suggestedWindow": {
            "start": dualca_ca::clock::rfc3339(window.start),
            "end": dualca_ca::clock::rfc3339(window.end),
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((actix_web::http::header::RETRY_AFTER, window.retry_after.to_string()))
        .body(body.to_string()))
}
