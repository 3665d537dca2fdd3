use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use dualca_ca::hierarchy::der_to_pem;
use dualca_ca::Revoker;

use super::ca_call;
use crate::jws::{self, Jws, Signer};
use crate::problem::Problem;
use crate::wire::RevokeRequest;
use crate::AcmeState;

/// RFC 8555 §7.4.2: the chain, leaf first, as application/pem-certificate-chain.
pub async fn certificate(
    state: web::Data<AcmeState>,
    path: web::Path<String>,
    jws: Jws,
) -> Result<HttpResponse, Problem> {
    let account = jws.account()?.clone();
    jws.require_post_as_get()?;
    let (ca, serial) = (state.ca.clone(), path.into_inner());
    let cert = ca_call(&state.ca, move || ca.certificate_for(&account, &serial)).await?;
    let mut chain = der_to_pem(&cert.der);
    chain.push_str(state.ca.chain_pem(state.track));
    Ok(HttpResponse::build(StatusCode::OK).content_type("application/pem-certificate-chain").body(chain))
}

/// RFC 8555 §7.6.
pub async fn revoke(state: web::Data<AcmeState>, jws: Jws) -> Result<HttpResponse, Problem> {
    let request: RevokeRequest = jws.json()?;
    let der = jws::b64("certificate", &request.certificate)?;
    let (ca, track) = (state.ca.clone(), state.track);
    let reason = request.reason;
    match jws.signer {
        Signer::Account(account) => {
            ca_call(&state.ca, move || ca.revoke_by_subscriber(track, Revoker::Account(&account), &der, reason)).await?
        }
        Signer::Key(key) => {
            let thumbprint = key.thumbprint.clone();
            ca_call(&state.ca, move || {
                ca.revoke_by_subscriber(track, Revoker::CertificateKey { thumbprint: &thumbprint }, &der, reason)
            })
            .await?
        }
    }
    crate::metrics::REVOCATIONS.with_label_values(&[state.track.as_str()]).inc();
    Ok(HttpResponse::Ok().finish())
}
