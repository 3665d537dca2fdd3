use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use dualca_ca::jwk::PublicJwk;
use dualca_ca::NewAccount;

use super::{ca_call, ca_call_owing, json_response};
use crate::jws::{self, Jws, Signer};
use crate::problem::Problem;
use crate::wire::{self, AccountUpdate, KeyChangeInner, NewAccountRequest};
use crate::AcmeState;

/// RFC 8555 §7.3.
pub async fn new_account(state: web::Data<AcmeState>, jws: Jws) -> Result<HttpResponse, Problem> {
    let Signer::Key(key) = &jws.signer else {
        return Err(Problem::malformed("newAccount must be signed with a jwk, not a kid"));
    };
    let request: NewAccountRequest = jws.json()?;
    let (ca, track, thumbprint) = (state.ca.clone(), state.track, key.thumbprint.clone());
    let (existing, looked_up) = ca_call_owing(&state.ca, move || ca.account_by_key(track, &thumbprint)).await?;
    if let Some(existing) = existing {
        looked_up.wait().await?;
        let body = wire::account(&state, &existing);
        return Ok(json_response(StatusCode::OK, Some(state.account_url(&existing.id)), &body));
    }
    if request.only_return_existing == Some(true) {
        looked_up.wait().await?;
        return Err(dualca_ca::Error::account_does_not_exist("no account exists for this key").into());
    }
    let eab = match &request.external_account_binding {
        None => None,
        Some(binding) => Some(parse_eab(&state, binding, key)?),
    };
    let new = NewAccount {
        jwk: key.canonical.clone(),
        thumbprint: key.thumbprint.clone(),
        contact: request.contact.unwrap_or_default(),
        tos_agreed: request.terms_of_service_agreed.unwrap_or(false),
        eab,
    };
    let (ca, track) = (state.ca.clone(), state.track);
    let made = ca_call(&state.ca, move || ca.create_account(track, new)).await;
    // The lookup's durability is not waited for before the account is made, which would cost
    // a new account a second fsync wait: a made account's commit came after the lookup, so its
    // wait covered the lookup's and this one returns at once. Only a refusal may wait here.
    looked_up.wait().await?;
    let (account, created) = made?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(json_response(status, Some(state.account_url(&account.id)), &wire::account(&state, &account)))
}

/// RFC 8555 §7.3.2 and §7.3.6: read, update contacts, or deactivate.
pub async fn account(state: web::Data<AcmeState>, path: web::Path<String>, jws: Jws) -> Result<HttpResponse, Problem> {
    let account = jws.account()?.clone();
    if account.id != *path {
        return Err(Problem::unauthorized("an account can only be read or changed by its own key"));
    }
    let location = Some(state.account_url(&account.id));
    if jws.is_post_as_get() {
        return Ok(json_response(StatusCode::OK, location, &wire::account(&state, &account)));
    }
    let update: AccountUpdate = jws.json()?;
    let ca = state.ca.clone();
    let updated = match (update.status.as_deref(), update.contact) {
        (Some("deactivated"), _) => ca_call(&state.ca, move || ca.deactivate_account(&account)).await?,
        (Some(other), _) if other != account.status.as_str() => {
            return Err(Problem::malformed(format!(
                "an account's status can only be set to \"deactivated\", not {other:?}"
            )))
        }
        (_, Some(contact)) => ca_call(&state.ca, move || ca.update_contact(&account, contact)).await?,
        (_, None) => account,
    };
    Ok(json_response(StatusCode::OK, location, &wire::account(&state, &updated)))
}

/// RFC 8555 §7.3.5: the outer JWS is signed by the old key, the inner by the new one.
pub async fn key_change(state: web::Data<AcmeState>, jws: Jws) -> Result<HttpResponse, Problem> {
    let account = jws.account()?.clone();
    let (inner, protected) = jws::parse_flattened(&jws.payload)?;
    let alg = jws::check_algorithm(&protected)?.to_string();
    if protected.kid.is_some() {
        return Err(Problem::malformed("the inner keyChange JWS must carry a jwk, not a kid"));
    }
    if protected.nonce.is_some() {
        return Err(Problem::malformed("the inner keyChange JWS must not carry a nonce"));
    }
    if protected.url.as_deref() != Some(jws.url.as_str()) {
        return Err(Problem::malformed("the inner keyChange JWS's url differs from the outer one"));
    }
    let jwk = protected.jwk.as_ref().ok_or_else(|| Problem::malformed("the inner keyChange JWS has no jwk"))?;
    let new_key = PublicJwk::from_value(jwk)?;
    jws::verify_signature(&inner, &new_key, &alg)?;
    let request: KeyChangeInner = serde_json::from_slice(&jws::b64("payload", &inner.payload)?)
        .map_err(|e| Problem::malformed(format!("inner keyChange payload: {e}")))?;
    if request.account != state.account_url(&account.id) {
        return Err(Problem::unauthorized("the inner keyChange payload names another account"));
    }
    if PublicJwk::from_value(&request.old_key)?.thumbprint != account.key_thumbprint {
        return Err(Problem::unauthorized("oldKey is not the account's current key"));
    }
    let (ca, canonical, thumbprint) = (state.ca.clone(), new_key.canonical.clone(), new_key.thumbprint.clone());
    match web::block(move || ca.change_key(&account, &canonical, &thumbprint)).await? {
        Ok(updated) => {
            Ok(json_response(StatusCode::OK, Some(state.account_url(&updated.id)), &wire::account(&state, &updated)))
        }
        Err(e) => {
            let location = e.conflicting_account.as_deref().map(|id| state.account_url(id));
            let mut problem = Problem::from(e);
            problem.location = location;
            Err(problem)
        }
    }
}

/// RFC 8555 §7.3.4: the binding is a JWS over the account key, MACed with the EAB key. Its
/// shape is checked here; the MAC, the kid and what it binds to are checked by the CA.
fn parse_eab(
    state: &AcmeState,
    binding: &serde_json::Value,
    account_key: &PublicJwk,
) -> Result<dualca_ca::EabProof, Problem> {
    let body = serde_json::to_vec(binding).map_err(|_| Problem::malformed("externalAccountBinding is not JSON"))?;
    let (jws, protected) =
        jws::parse_flattened(&body).map_err(|p| Problem::malformed(format!("externalAccountBinding: {}", p.detail)))?;
    let alg = protected.alg.clone().unwrap_or_default();
    if !matches!(alg.as_str(), "HS256" | "HS384" | "HS512") {
        return Err(Problem::malformed(format!("externalAccountBinding must use HS256, HS384 or HS512, not {alg:?}")));
    }
    if protected.nonce.is_some() {
        return Err(Problem::malformed("externalAccountBinding must not carry a nonce"));
    }
    if protected.url.as_deref() != Some(state.url("new-account").as_str()) {
        return Err(Problem::malformed("externalAccountBinding's url must be the newAccount URL"));
    }
    let kid = protected.kid.clone().ok_or_else(|| Problem::malformed("externalAccountBinding has no kid"))?;
    let bound: serde_json::Value = serde_json::from_slice(&jws::b64("externalAccountBinding payload", &jws.payload)?)
        .map_err(|_| Problem::malformed("externalAccountBinding's payload is not a JWK"))?;
    if PublicJwk::thumbprint_of(&bound)? != account_key.thumbprint {
        return Err(Problem::malformed("externalAccountBinding binds another key than the account's"));
    }
    Ok(dualca_ca::EabProof {
        kid,
        alg,
        signing_input: format!("{}.{}", jws.protected, jws.payload).into_bytes(),
        signature: jws::b64("externalAccountBinding signature", &jws.signature)?,
    })
}
