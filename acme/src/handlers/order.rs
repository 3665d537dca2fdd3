use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse};
use dualca_ca::NewOrder;
use serde_json::json;

use super::{ca_call, json_response};
use crate::jws::{self, Jws};
use crate::problem::Problem;
use crate::wire::{self, FinalizeRequest, NewOrderRequest};
use crate::AcmeState;

/// RFC 8555 §7.4.
pub async fn new_order(state: web::Data<AcmeState>, jws: Jws) -> Result<HttpResponse, Problem> {
    let account = jws.account()?.clone();
    let request: NewOrderRequest = jws.json()?;
    if request.not_before.is_some() || request.not_after.is_some() {
        return Err(Problem::malformed("notBefore and notAfter are not accepted: lifetimes come from the profile"));
    }
    let new = NewOrder {
        identifiers: request.identifiers.into_iter().map(|i| (i.kind, i.value)).collect(),
        profile: request.profile,
        replaces: request.replaces,
    };
    let ca = state.ca.clone();
    let order = ca_call(&state.ca, move || ca.new_order(&account, new)).await?;
    let location = state.url(&format!("order/{}", order.id));
    Ok(json_response(StatusCode::CREATED, Some(location), &wire::order(&state, &order)))
}

pub async fn order(state: web::Data<AcmeState>, path: web::Path<String>, jws: Jws) -> Result<HttpResponse, Problem> {
    let account = jws.account()?.clone();
    jws.require_post_as_get()?;
    let (ca, track, id) = (state.ca.clone(), state.track, path.into_inner());
    let order = ca_call(&state.ca, move || ca.order(track, &id)).await?;
    if order.account_id != account.id {
        return Err(Problem::unauthorized("this order belongs to another account"));
    }
    Ok(json_response(StatusCode::OK, None, &wire::order(&state, &order)))
}

/// RFC 8555 §7.1.2.1: the orders list, a page at a time with a `next` link.
pub async fn orders_list(
    state: web::Data<AcmeState>,
    path: web::Path<String>,
    query: web::Query<OrdersQuery>,
    jws: Jws,
) -> Result<HttpResponse, Problem> {
    let account = jws.account()?.clone();
    jws.require_post_as_get()?;
    if account.id != *path {
        return Err(Problem::unauthorized("an account's orders can only be listed by that account"));
    }
    let ca = state.ca.clone();
    let cursor = query.into_inner().cursor;
    let account_id = account.id.clone();
    let (ids, next) = ca_call(&state.ca, move || ca.orders_page(&account, cursor.as_deref())).await?;
    let body = json!({ "orders": ids.iter().map(|id| state.url(&format!("order/{id}"))).collect::<Vec<_>>() });
    let mut res = json_response(StatusCode::OK, None, &body);
    if let Some(next) = next {
        let link = format!("<{}?cursor={next}>;rel=\"next\"", state.url(&format!("acct/{account_id}/orders")));
        if let Ok(value) = header::HeaderValue::from_str(&link) {
            res.headers_mut().append(header::LINK, value);
        }
    }
    Ok(res)
}

#[derive(serde::Deserialize)]
pub struct OrdersQuery {
    cursor: Option<String>,
}

/// RFC 8555 §7.4: finalize issues at once; the order comes back valid with its certificate URL.
pub async fn finalize(state: web::Data<AcmeState>, path: web::Path<String>, jws: Jws) -> Result<HttpResponse, Problem> {
    let account = jws.account()?.clone();
    let request: FinalizeRequest = jws.json()?;
    let csr = jws::b64("csr", &request.csr)?;
    let (ca, id) = (state.ca.clone(), path.into_inner());
    let order = ca_call(&state.ca, move || ca.finalize(&account, &id, &csr)).await?;
    crate::metrics::ISSUANCES.with_label_values(&[state.track.as_str(), order.profile.as_str()]).inc();
    let location = state.url(&format!("order/{}", order.id));
    Ok(json_response(StatusCode::OK, Some(location), &wire::order(&state, &order)))
}
